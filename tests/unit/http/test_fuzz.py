"""Hostile input, generated: the hub never answers 5xx for input, never emits a malformed
frame, and no event type or data can inject an SSE field."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub.delivery.cursor import Position, channel_tag, encode, encode_part
from tests.support.hubs import HubClient
from tests.support.sse_client import SSEStream

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
event_types = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
names = st.one_of(st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True), st.text(max_size=30))
messages = st.fixed_dictionaries(
    {},
    optional={
        "users": st.one_of(st.lists(names, max_size=3), json_values),
        "topics": st.one_of(st.lists(names, max_size=3), json_values),
        "event": st.one_of(
            st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True), st.text(), json_values
        ),
        "data": json_values,
        "extra": json_values,
    },
)
bodies = st.one_of(messages, st.lists(messages, max_size=4), json_values)


numbers = st.integers(0, 36**12 - 1)
cursors = st.lists(
    st.tuples(
        st.one_of(
            st.just(channel_tag("user:fuzzer")), st.from_regex(r"[0-9a-z]{1,8}", fullmatch=True)
        ),
        numbers,
        numbers,
    ),
    min_size=1,
    max_size=3,
).map(lambda parts: encode([encode_part(tag, Position(e, o)) for tag, e, o in parts]))


@FUZZ
@given(body=bodies, raw=st.one_of(st.none(), st.binary(max_size=200)))
async def test_publish_never_5xx(hub: HubClient, body: Any, raw: bytes | None) -> None:
    status, answer = await hub.post(body, raw=raw)
    assert status in (200, 400, 413, 422), (status, answer)
    if status != 200:
        assert answer["status"] == status
        assert answer["title"]


@FUZZ
@given(
    topics=st.lists(st.text(max_size=40), max_size=5),
    last_id=st.one_of(st.none(), st.text(max_size=80), cursors),
)
async def test_subscribe_never_5xx(hub: HubClient, topics: list[str], last_id: str | None) -> None:
    params = [("topic", t) for t in topics]
    if last_id is not None:
        params.append(("lastEventId", last_id))
    token = hub.subscriber_token("fuzzer", topics=["*"])
    response = await hub.client.get(
        "/events", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        assert response.status in (200, 400), response.status
        if response.status == 200:
            opening = await response.content.readuntil(b"\n\n")
            assert re.fullmatch(
                rb"retry: \d+\n(id: [0-9a-z._]+\n)?event: hub.open\ndata: {}\n\n", opening
            ), opening
            if last_id is not None:  # whatever the cursor, the stream goes on to serve
                await hub.send("alive", users=["fuzzer"])
                stream = SSEStream(response)
                while (event := await stream.next(timeout=10)).event == "hub.reset":
                    pass
                assert event.data == "alive"
        else:
            assert (await response.json())["status"] == 400
    finally:
        response.close()


line_breaks = st.sampled_from(["\n", "\r", "\r\n", "\n\n", "\r\r\n"])
injections = st.sampled_from(
    ["event: hub.reset", "id: 0", "data: forged", "retry: 1", ": comment", "", "data:", "event:x"]
)
texts = st.lists(st.one_of(st.text(max_size=20), line_breaks, injections), max_size=8).map("".join)


@FUZZ
@given(
    payloads=st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True), st.one_of(texts, json_values)
        ),
        min_size=1,
        max_size=5,
    )
)
async def test_no_field_injection(hub: HubClient, payloads: list[tuple[str, Any]]) -> None:
    assume(not any(event.startswith("hub.") for event, _ in payloads))  # the hub's own types
    stream = await hub.subscribe("target")
    batch = [{"users": ["target"], "event": e, "data": d} for e, d in payloads]
    status, answer = await hub.post(batch)
    assert status == 200, answer
    received = await stream.take(len(payloads))
    for (event, data), got in zip(payloads, received, strict=True):
        assert got.event == event
        if isinstance(data, str):
            assert got.data == re.sub(r"\r\n|\r", "\n", data)
        else:  # compact JSON of the same value (number formatting is the encoder's)
            assert "\n" not in got.data
            assert json.loads(got.data) == data
    await hub.send("end", users=["target"])
    assert (await stream.next()).data == "end", "nothing extra was dispatched"
    stream.close()
