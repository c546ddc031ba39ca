"""One mapping of errors to problem+json (`hub.http.problem.error_answer`): the same answer from
the lean front and from aiohttp's handlers, and an unexpected error's traceback logged once."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp import web

from hub.errors import BrokerUnavailable, Unauthorized
from hub.http.problem import error_answer
from hub.http.state import HUB
from hub.message import Message
from tests.support.hubs import HubClient

FAILED = {
    "type": "about:blank",
    "title": "Internal error",
    "status": 500,
    "detail": "the hub failed to handle the request (see its log)",
}


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # errors are mapped the same whatever the broker


def _failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "hub.http.problem" and r.levelno >= logging.ERROR
    ]


async def test_an_unexpected_error_in_an_aiohttp_handler_is_a_problem_json_500(
    hub: HubClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ready() -> bool:
        raise RuntimeError("the readiness check broke")

    monkeypatch.setattr(hub.client.app[HUB].broker, "ready", ready)
    async with hub.client.get("/readyz?token=not-logged") as response:
        assert response.status == 500
        assert response.headers["Content-Type"] == "application/problem+json"
        assert await response.json() == FAILED
    (record,) = _failures(caplog)
    assert record.getMessage() == "GET /readyz failed"  # the path, never the query
    assert record.exc_info is not None
    assert "the readiness check broke" in str(record.exc_info[1])


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
async def test_an_unexpected_error_while_publishing_is_the_same_500_on_either_path(
    hub: HubClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    content_type: str,
) -> None:
    """A JSON publish is answered by the lean front, an NDJSON one by aiohttp's handler."""

    async def publish(messages: Sequence[Message], idempotency: Any = None) -> Any:
        raise RuntimeError("the broker broke")

    monkeypatch.setattr(hub.client.app[HUB].broker, "publish", publish)
    status, answer = await hub.post(
        raw=b'{"users": ["eve"], "data": "x"}\n', content_type=content_type
    )
    assert (status, answer) == (500, FAILED)
    (record,) = _failures(caplog)
    assert record.getMessage() == "POST /publish failed"
    assert record.exc_info is not None


def test_error_answer_maps_hub_errors_with_their_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, headers, body = error_answer(Unauthorized("no token"), "GET /events")
    assert (status, headers) == (401, {"WWW-Authenticate": 'Bearer realm="hub"'})
    assert json.loads(body)["detail"] == "no token"
    assert not caplog.records, "a client's error is not the hub's"

    status, headers, body = error_answer(BrokerUnavailable("down"), "POST /publish")
    assert (status, headers) == (503, {"Retry-After": "1"})
    (record,) = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "POST /publish: down")
    assert record.exc_info is None, "an expected 5xx needs no traceback"


def test_error_answer_keeps_aiohttp_statuses_and_their_allow_header() -> None:
    status, headers, body = error_answer(
        web.HTTPMethodNotAllowed("PUT", ["GET"], headers={"X-Other": "dropped"}), "PUT /events"
    )
    assert (status, headers) == (405, {"Allow": "GET"})
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "405: Method Not Allowed",
    }


def test_error_answer_logs_an_unexpected_error_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("surprise")
    except KeyError as exc:
        caught = exc
    status, headers, body = error_answer(caught, "GET /somewhere")
    assert (status, headers, json.loads(body)) == (500, {}, FAILED)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "GET /somewhere failed"
    assert record.exc_info is not None
    assert record.exc_info[1] is caught
