"""POST /publish: answers, batches, NDJSON, idempotency and every validation error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.hubs import EVERY_BROKER, HubClient, MakeHub


@pytest.fixture(params=EVERY_BROKER)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every behaviour here holds on every broker and Redis topology."""
    return str(request.param)


async def _history(hub: HubClient, user: str) -> list[str]:
    """What a client replaying all history of `user` receives right now."""
    stream = await hub.subscribe(user, query_last_id="earliest")
    marker = await hub.send("--end--", users=[user])
    assert marker
    events = []
    while (event := await stream.next()).data != "--end--":
        events.append(event.data)
    stream.close()
    return events


async def test_single_message_answer_has_an_id_per_channel(hub: HubClient) -> None:
    status, answer = await hub.post(
        {"users": ["alice", "bob", "alice"], "topics": ["news"], "data": 1}
    )
    assert status == 200
    assert answer == {"ids": {"user:alice": "1-0", "user:bob": "1-0", "topic:news": "1-0"}}
    status, answer = await hub.post({"users": ["alice"], "data": 2})
    assert answer == {"ids": {"user:alice": "2-0"}}


async def test_batch_is_published_in_order(hub: HubClient) -> None:
    batch = [{"users": ["ann"], "data": f"m{n}"} for n in range(5)]
    status, answer = await hub.post(batch)
    assert status == 200
    assert [r["ids"]["user:ann"] for r in answer["results"]] == [f"{n}-0" for n in range(1, 6)]
    assert await _history(hub, "ann") == [f"m{n}" for n in range(5)]


async def test_batch_with_one_bad_message_publishes_nothing(hub: HubClient) -> None:
    batch: list[Any] = [{"users": ["ben"], "data": "ok"}, {"users": ["ben"]}]
    status, problem = await hub.post(batch)
    assert status == 400
    assert "message 1" in problem["detail"]
    assert await _history(hub, "ben") == []


BAD_BODIES: list[tuple[Any, str]] = [
    ("not an object", "JSON object"),
    ({"data": "x"}, "at least one"),
    ({"users": [], "topics": [], "data": "x"}, "at least one"),
    ({"users": "alice", "data": "x"}, "list of strings"),
    ({"users": [1], "data": "x"}, "users"),
    ({"users": ["bad id!"], "data": "x"}, "users"),
    ({"users": ["x" * 129], "data": "x"}, "users"),
    ({"topics": ["a/b"], "data": "x"}, "topics"),
    ({"users": ["alice"]}, "'data' is required"),
    ({"users": ["alice"], "data": "x", "event": "bad\nevent"}, "event"),
    ({"users": ["alice"], "data": "x", "event": "a\r"}, "event"),
    ({"users": ["alice"], "data": "x", "event": "a\u0000b"}, "event"),
    ({"users": ["alice"], "data": "x", "event": ""}, "event"),
    ({"users": ["alice"], "data": "x", "event": "e" * 65}, "event"),
    ({"users": ["alice"], "data": "x", "event": 5}, "event"),
    ({"users": ["alice"], "data": "x", "colour": "red"}, "unknown field"),
    ({"users": ["alice"], "data": "x", "event": "hub.reset"}, "reserved"),
    ([], "at least one message"),
]


@pytest.mark.parametrize(("body", "detail"), BAD_BODIES)
async def test_bad_fields_are_400_problems(hub: HubClient, body: Any, detail: str) -> None:
    status, problem = await hub.post(body)
    assert status == 400
    assert problem["status"] == 400
    assert detail in problem["detail"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"users": ["a"], "data": NaN}', b"\xff\xfe", b'{"users":["a"],"data":"\\ud800"}'],
)
async def test_malformed_json_is_400(hub: HubClient, raw: bytes) -> None:
    status, problem = await hub.post(raw=raw)
    assert status == 400
    assert problem["title"] == "Bad request"


async def test_payload_over_the_limit_is_413(make_hub: MakeHub) -> None:
    hub = await make_hub(max_payload_bytes=100, max_body_bytes=1000)
    status, _ = await hub.post({"users": ["a"], "data": "x" * 100})
    assert status == 200
    status, problem = await hub.post({"users": ["a"], "data": "é" * 51})
    assert status == 413
    assert "102 bytes" in problem["detail"]
    status, problem = await hub.post(raw=b" " * 2000)
    assert status == 413
    status, _ = await hub.post([{"users": ["a"], "data": "x"}] * 501)
    assert status == 413


async def test_other_content_types_are_415(hub: HubClient) -> None:
    status, problem = await hub.post(raw=b'{"users":["a"],"data":1}', content_type="text/plain")
    assert status == 415
    assert "application/json" in problem["detail"]


async def test_publisher_auth(hub: HubClient) -> None:
    body = {"users": ["alice"], "topics": ["news"], "data": 1}
    async with hub.client.post("/publish", json=body) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
    status, _ = await hub.post(body, token=hub.subscriber_token("alice"))
    assert status == 401, "a subscriber token must not publish"
    status, problem = await hub.post(body, token=hub.publisher_token(["user:*"]))
    assert status == 403
    assert "topic:news" in problem["detail"]
    status, _ = await hub.post(body, token=hub.publisher_token(["user:alice", "topic:*"]))
    assert status == 200
    status, _ = await hub.post(body, token=hub.publisher_token(["*"], ttl=-10))
    assert status == 401


async def test_ndjson_lines_are_published_as_they_come(hub: HubClient) -> None:
    lines = b'{"users":["nia"],"data":"t1"}\n\n{"users":["nia"],"data":"t2","event":"token"}\n'
    status, answer = await hub.post(raw=lines, content_type="application/x-ndjson")
    assert status == 200
    assert [r["ids"]["user:nia"] for r in answer["results"]] == ["1-0", "2-0"]
    bad = b'{"users":["nia"],"data":"t3"}\n{"users":["nia"]}\n{"users":["nia"],"data":"t4"}\n'
    status, problem = await hub.post(raw=bad, content_type="application/x-ndjson")
    assert status == 400
    assert problem["detail"].startswith("line 2:")
    assert problem["published"] == 1
    assert await _history(hub, "nia") == ["t1", "t2", "t3"]


async def test_ndjson_lines_read_together_are_published_in_order_in_slices(
    make_hub: MakeHub,
) -> None:
    hub = await make_hub(max_batch_size=7)
    body = b"".join(b'{"users":["ola"],"data":"n%d"}\n' % n for n in range(30))
    status, answer = await hub.post(raw=body, content_type="application/x-ndjson")
    assert status == 200
    assert [r["ids"]["user:ola"] for r in answer["results"]] == [f"{n}-0" for n in range(1, 31)]
    assert await _history(hub, "ola") == [f"n{n}" for n in range(30)]


async def test_ndjson_is_streamed_line_by_line(hub: HubClient) -> None:
    """Each line reaches subscribers before the request body has ended."""
    import asyncio

    stream = await hub.subscribe("zed")
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def body() -> Any:
        while (line := await queue.get()) is not None:
            yield line

    request = asyncio.ensure_future(
        hub.client.post(
            "/publish",
            data=body(),
            headers={
                "Authorization": f"Bearer {hub.publisher_token()}",
                "Content-Type": "application/x-ndjson",
            },
        )
    )
    for n in range(3):
        await queue.put(b'{"users":["zed"],"data":"tok%d"}\n' % n)
        assert (await stream.next()).data == f"tok{n}"
    await queue.put(None)
    response = await request
    assert response.status == 200
    assert len((await response.json())["results"]) == 3
    stream.close()


async def test_idempotency_key_makes_a_retry_publish_once(hub: HubClient) -> None:
    body = {"users": ["ida"], "data": "once"}
    key = {"Idempotency-Key": "order-42"}
    first = await hub.post(body, headers=key)
    second = await hub.post(body, headers=key)
    assert first == second
    assert first[0] == 200
    status, problem = await hub.post({"users": ["ida"], "data": "other"}, headers=key)
    assert status == 422
    assert "different request" in problem["detail"]
    assert await _history(hub, "ida") == ["once"]
    status, _ = await hub.post(body, headers={"Idempotency-Key": ""})
    assert status == 400


async def test_idempotency_key_on_ndjson_resends_only_what_was_not_published(
    hub: HubClient,
) -> None:
    key = {"Idempotency-Key": "stream-7"}
    good = b'{"users":["ned"],"data":"w1"}\n{"users":["ned"],"data":"w2"}\n'
    cut = good + b'{"users":["ned"],"data":"w3"}\n{"users":["ned"]}\n'
    status, problem = await hub.post(raw=cut, content_type="application/x-ndjson", headers=key)
    assert status == 400
    assert problem["published"] == 3
    retry = good + b'{"users":["ned"],"data":"w3"}\n{"users":["ned"],"data":"w4"}\n'
    status, answer = await hub.post(raw=retry, content_type="application/x-ndjson", headers=key)
    assert status == 200
    assert [r["ids"]["user:ned"] for r in answer["results"]] == ["1-0", "2-0", "3-0", "4-0"]
    assert await _history(hub, "ned") == ["w1", "w2", "w3", "w4"]
