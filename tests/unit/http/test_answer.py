"""`hub.http.publish.answer`: the lean front's whole answer to a JSON publish, its errors
rendered as aiohttp's middleware renders them, and when the connection closes after it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from hub.errors import BrokerUnavailable
from hub.http.head import Head, HeadReader
from hub.http.publish import Answer, answer
from hub.http.state import HUB, Hub
from hub.message import Message
from tests.support.hubs import HubClient


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # the answer is made the same whatever the broker


def _request(token: str | None, extra: str = "") -> Head:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = HeadReader().feed(f"POST /publish HTTP/1.1\r\nHost: hub\r\n{auth}{extra}\r\n".encode())
    assert head is not None
    return head


def _split(reply: Answer) -> tuple[list[str], Any]:
    head, _, body = reply.data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert f"Content-Length: {len(body)}" in lines
    return lines, json.loads(body)


def _state(hub: HubClient) -> Hub:
    return hub.client.app[HUB]


async def test_a_publish_is_answered_with_its_ids(hub: HubClient) -> None:
    body = b'{"users": ["ann"], "data": "x"}'
    reply = await answer(_state(hub), _request(hub.publisher_token()), body, lambda: False)
    lines, content = _split(reply)
    assert (reply.status, reply.close) == (200, False)
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: application/json" in lines
    assert "Connection: close" not in lines
    assert list(content["ids"]) == ["user:ann"]


async def test_a_refusal_is_a_problem_and_the_connection_stays(hub: HubClient) -> None:
    reply = await answer(_state(hub), _request(None), b"{}", lambda: False)
    lines, problem = _split(reply)
    assert (reply.status, reply.close) == (401, False)
    assert lines[0] == "HTTP/1.1 401 Unauthorized"
    assert "Content-Type: application/problem+json" in lines
    assert 'WWW-Authenticate: Bearer realm="hub"' in lines
    assert problem["status"] == 401


async def test_the_client_asking_to_close_is_honoured(hub: HubClient) -> None:
    request = _request(hub.publisher_token(), "Connection: Close\r\n")
    reply = await answer(_state(hub), request, b'{"users": ["bo"], "data": 1}', lambda: False)
    lines, _ = _split(reply)
    assert reply.close
    assert lines[-1] == "Connection: close"


@pytest.mark.parametrize(
    ("error", "status", "close"),
    [
        (RuntimeError("the broker broke"), 500, True),  # the hub's own failure: start afresh
        (BrokerUnavailable("down"), 503, False),  # an expected outage: the client retries
    ],
)
async def test_a_failure_closes_only_when_unexpected(
    hub: HubClient,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    status: int,
    close: bool,
) -> None:
    async def publish(messages: Sequence[Message], idempotency: Any = None) -> Any:
        raise error

    monkeypatch.setattr(_state(hub).broker, "publish", publish)
    request = _request(hub.publisher_token())
    reply = await answer(_state(hub), request, b'{"users": ["cy"], "data": 1}', lambda: False)
    lines, problem = _split(reply)
    assert (reply.status, reply.close, problem["status"]) == (status, close, status)
    assert ("Connection: close" in lines) == close


async def test_a_cancellation_from_below_is_answered_503_not_left_unanswered(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def publish(messages: Sequence[Message], idempotency: Any = None) -> Any:
        raise asyncio.CancelledError  # as a connection attempt another task cancelled

    monkeypatch.setattr(_state(hub).broker, "publish", publish)
    request = _request(hub.publisher_token())
    reply = await answer(_state(hub), request, b'{"users": ["cy"], "data": 1}', lambda: False)
    lines, problem = _split(reply)
    assert (reply.status, problem["status"]) == (503, 503)
    assert "Retry-After: 1" in lines


async def test_the_fronts_own_cancellation_goes_through(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()

    async def publish(messages: Sequence[Message], idempotency: Any = None) -> Any:
        started.set()
        await asyncio.sleep(60)

    monkeypatch.setattr(_state(hub).broker, "publish", publish)
    request = _request(hub.publisher_token())
    task = asyncio.create_task(
        answer(_state(hub), request, b'{"users": ["cy"], "data": 1}', lambda: False)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_closing_is_asked_once_the_publish_is_done(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown that begins while a publish is applied still closes after its answer."""
    state = _state(hub)
    publish = state.broker.publish
    closing = False

    async def publish_then_close(messages: Sequence[Message], idempotency: Any = None) -> Any:
        nonlocal closing
        result = await publish(messages, idempotency)
        closing = True
        return result

    monkeypatch.setattr(state.broker, "publish", publish_then_close)
    request = _request(hub.publisher_token())
    reply = await answer(state, request, b'{"users": ["di"], "data": 1}', lambda: closing)
    lines, _ = _split(reply)
    assert (reply.status, reply.close) == (200, True)
    assert lines[-1] == "Connection: close"
