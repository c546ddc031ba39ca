"""`POST /publish`: validate, authorize, append to history and publish live, then answer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from hub.auth import Publisher
from hub.broker import Idempotency
from hub.channels import allowed
from hub.errors import (
    BadRequest,
    BrokerUnavailable,
    Forbidden,
    HubError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from hub.message import Message, loads, parse_message
from hub.state import HUB, Hub
from hub.tokens import publisher_token

JSON = "application/json"
NDJSON = "application/x-ndjson"
_MAX_IDEMPOTENCY_KEY = 255


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes, over {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
    return bytes(body)


def _authorize(publisher: Publisher, message: Message, where: str = "") -> None:
    for channel in message.channels:
        if not allowed(channel, publisher.grants):
            raise Forbidden(f"{where}the token does not allow publishing to {channel!r}")


def _idempotency_key(request: web.Request, publisher: Publisher) -> str | None:
    """The request's Idempotency-Key, scoped to its publisher; None without one."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} printable characters")
    return f"{publisher.name}\0{key}"


def _idempotency(scoped_key: str | None, body: bytes) -> Idempotency | None:
    if scoped_key is None:
        return None
    return Idempotency(scoped_key, hashlib.sha256(body).hexdigest())


def _messages(hub: Hub, publisher: Publisher, payload: Any) -> tuple[list[Message], bool]:
    s = hub.settings
    batch = isinstance(payload, list)
    items = payload if batch else [payload]
    if batch and not items:
        raise BadRequest("a batch must hold at least one message")
    if len(items) > s.max_batch_size:
        raise PayloadTooLarge(f"a batch holds at most {s.max_batch_size} messages")
    messages = []
    for n, item in enumerate(items):
        where = f"message {n}: " if batch else ""
        message = parse_message(
            item, max_payload_bytes=s.max_payload_bytes, max_targets=s.max_targets, where=where
        )
        _authorize(publisher, message, where)
        messages.append(message)
    return messages, batch


async def publish(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    started = time.perf_counter()
    try:
        response = await _publish(request, hub)
    except HubError as exc:
        outcome = "unavailable" if isinstance(exc, BrokerUnavailable) else "rejected"
        if exc.status >= 500 and outcome != "unavailable":
            outcome = "error"
        hub.metrics.publishes.labels(outcome).inc()
        raise
    hub.metrics.publishes.labels("ok").inc()
    hub.metrics.publish_latency.observe(time.perf_counter() - started)
    return response


async def _publish(request: web.Request, hub: Hub) -> web.Response:
    publisher = hub.publisher_tokens.publisher(publisher_token(request))
    if request.content_type == NDJSON:
        return await _publish_lines(request, hub, publisher)
    if request.content_type != JSON:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON} or {NDJSON}, not {request.content_type!r}"
        )
    body = await _read_body(request, hub.settings.max_body_bytes)
    messages, batch = _messages(hub, publisher, loads(body))
    idempotency = _idempotency(_idempotency_key(request, publisher), body)
    results = await hub.broker.publish(messages, idempotency)
    answer = {"results": [{"ids": ids} for ids in results]} if batch else {"ids": results[0]}
    return _json(answer)


async def _lines(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """Body lines as they arrive; a line longer than `limit` is refused with 413."""
    buffer = bytearray()
    async for chunk in request.content.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            yield bytes(buffer[:end])
            del buffer[: end + 1]
        if len(buffer) > limit:
            raise PayloadTooLarge(f"a line is over {limit} bytes")
    if buffer:
        yield bytes(buffer)


async def _publish_lines(request: web.Request, hub: Hub, publisher: Publisher) -> web.Response:
    """One message per line, each published as soon as its line arrives.

    With an Idempotency-Key, each line is keyed by its number: a retried request
    publishes only the lines the first attempt did not.
    """
    s = hub.settings
    scoped_key = _idempotency_key(request, publisher)
    results: list[dict[str, Any]] = []
    number = 0
    reading = True  # an error while reading concerns the next line, not the last one
    try:
        async for line in _lines(request, s.max_payload_bytes * 2 + 65536):
            reading = False
            number += 1
            if not line.strip():
                reading = True
                continue
            message = parse_message(
                loads(line), max_payload_bytes=s.max_payload_bytes, max_targets=s.max_targets
            )
            _authorize(publisher, message)
            line_key = None if scoped_key is None else f"{scoped_key}\0{number}"
            (ids,) = await hub.broker.publish([message], _idempotency(line_key, line))
            results.append({"ids": ids})
            reading = True
    except HubError as exc:
        # The lines before the bad one stay published; the answer says how many.
        exc.detail = f"line {number + reading}: {exc.detail}"
        exc.extra["published"] = len(results)
        raise
    return _json({"results": results})


def _json(answer: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(answer), content_type=JSON)
