"""POST /events: the stream of GET /events for fetch clients, parameters in the query or
in a JSON body, the Last-Event-ID header winning; every bad body a problem, nothing opened."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse

from hub.http import events
from hub.http.state import HUB
from tests.support.hubs import HubClient
from tests.support.sse_client import SSEStream, datas


async def _post(
    hub: HubClient,
    body: Any = None,
    *,
    raw: bytes | None = None,
    user: str = "fetcher",
    headers: dict[str, str] | None = None,
    params: list[tuple[str, str]] | None = None,
) -> ClientResponse:
    all_headers = {
        "Authorization": f"Bearer {hub.subscriber_token(user)}",
        "Accept": "text/event-stream",  # as fetch-event-source sends it
        **({"Content-Type": "application/json"} if body is not None else {}),
        **(headers or {}),
    }
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return await hub.client.post("/events", data=data, headers=all_headers, params=params)


async def _stream(hub: HubClient, body: Any = None, **kw: Any) -> SSEStream:
    response = await _post(hub, body, **kw)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    stream = SSEStream(response)
    await stream.wait_open()
    return stream


async def test_topics_in_the_body_are_followed(hub: HubClient) -> None:
    stream = await _stream(hub, {"topics": ["news"]}, user="f1")
    await hub.send("mine", users=["f1"])
    await hub.send("headline", topics=["news"])
    assert datas(await stream.take(2)) == ["mine", "headline"]
    stream.close()


async def test_query_parameters_work_without_a_body(hub: HubClient) -> None:
    stream = await _stream(hub, user="f2", params=[("topic", "sport")])
    await hub.send("goal", topics=["sport"])
    assert datas(await stream.take(1)) == ["goal"]
    stream.close()


async def test_body_and_query_topics_are_both_followed(hub: HubClient) -> None:
    stream = await _stream(hub, {"topics": ["a", "b"]}, user="f3", params=[("topic", "b")])
    await hub.send("to a", topics=["a"])
    await hub.send("to b", topics=["b"])  # once, though named twice
    await hub.send("mine", users=["f3"])
    assert datas(await stream.take(3)) == ["to a", "to b", "mine"]
    stream.close()


async def test_resume_from_the_body_gets_exactly_what_was_missed(hub: HubClient) -> None:
    stream = await _stream(hub, {"topics": ["desk"]}, user="f4")
    opened_at = stream.last_id  # the opening cursor: a reconnect before the first event
    await hub.send("one", users=["f4"])
    await hub.send("two", topics=["desk"])
    stream.close()
    resumed = await _stream(hub, {"topics": ["desk"], "lastEventId": opened_at}, user="f4")
    assert datas(await resumed.take(2)) == ["one", "two"]
    await hub.send("three", users=["f4"])
    assert datas(await resumed.take(1)) == ["three"]
    resumed.close()


async def test_the_last_event_id_header_wins_over_the_body(hub: HubClient) -> None:
    stream = await _stream(hub, user="f5")
    await hub.send("old", users=["f5"])
    [old] = await stream.take(1)
    await hub.send("new", users=["f5"])
    stream.close()
    resumed = await _stream(
        hub, {"lastEventId": "earliest"}, user="f5", headers={"Last-Event-ID": old.id}
    )
    assert datas(await resumed.take(1)) == ["new"]  # not "old" again
    resumed.close()


async def test_earliest_in_the_body_replays_history(hub: HubClient) -> None:
    await hub.send("before", users=["f6"])
    stream = await _stream(hub, {"lastEventId": "earliest"}, user="f6")
    assert datas(await stream.take(1)) == ["before"]
    stream.close()


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "detail"),
    [
        (b"{", "application/json", 400, "not JSON"),
        (b'{"topic": ["x"]}', "application/json", 400, "unknown member 'topic'"),
        (b'{"topics": ["bad topic!"]}', "application/json", 400, "does not match"),
        (b'{"topics": ["secret"]}', "application/json", 403, "does not allow topic 'secret'"),
        (b'{"topics": []}', "text/plain", 415, "must be application/json"),
        (b"{}" + b" " * events.MAX_PARAMETERS_BODY, "application/json", 413, "over"),
    ],
)
async def test_a_bad_body_is_a_problem_and_opens_nothing(
    hub: HubClient, raw: bytes, content_type: str, status: int, detail: str
) -> None:
    token = hub.subscriber_token("f7", topics=["news"])
    response = await hub.client.post(
        "/events",
        data=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert detail in (await response.json())["detail"]
    assert not hub.client.app[HUB].fanout.streams  # nothing opened, no slot kept


async def test_a_body_that_cannot_be_decoded_is_400(hub: HubClient) -> None:
    response = await hub.client.post(
        "/events",
        data=b"0123456789",  # not gzip
        headers={
            "Authorization": f"Bearer {hub.subscriber_token('f9')}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert response.status == 400
    assert "could not be read" in (await response.json())["detail"]


async def test_no_token_is_401_before_the_body_is_read(hub: HubClient) -> None:
    response = await hub.client.post(
        "/events", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status == 401
    assert response.content_type == "application/problem+json"


async def _expect_continue(hub: HubClient, path: str, token: str | None) -> bytes:
    """What the hub answers to a head with `Expect: 100-continue`, before any body."""
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            f"Content-Length: 2\r\nExpect: 100-continue\r\n{auth}\r\n"
        ).encode()
    )
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/events", "/publish"])
async def test_a_stranger_is_refused_before_it_is_asked_for_its_body(
    hub: HubClient, path: str
) -> None:
    head = await _expect_continue(hub, path, None)
    assert head.startswith(b"HTTP/1.1 401 "), head  # no "100 Continue" first


@pytest.mark.parametrize("path", ["/events", "/publish"])
async def test_a_known_client_is_asked_for_its_body(hub: HubClient, path: str) -> None:
    token = hub.subscriber_token("f10") if path == "/events" else hub.publisher_token()
    head = await _expect_continue(hub, path, token)
    assert head == b"HTTP/1.1 100 Continue\r\n\r\n"


async def test_a_body_that_never_comes_is_408(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "PARAMETERS_TIMEOUT", 0.5)
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    token = hub.subscriber_token("f8")
    writer.write(
        (
            "POST /events HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            f"Content-Length: 50\r\nAuthorization: Bearer {token}\r\n\r\n{{"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"application/problem+json" in head
    writer.close()


async def test_other_methods_are_405_naming_get_and_post(hub: HubClient) -> None:
    response = await hub.client.request("PUT", "/events")
    assert response.status == 405
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(","))
