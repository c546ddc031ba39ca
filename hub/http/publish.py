"""`POST /publish`: validate, authorize, append to history and publish live, then answer."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import orjson
from aiohttp import web

from hub.auth.extract import publisher_token
from hub.auth.verify import Publisher
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
from hub.http.state import HUB, Hub
from hub.message import Message, loads, parse_message
from hub.requestview import RequestView

JSON = "application/json"
NDJSON = "application/x-ndjson"
_MAX_IDEMPOTENCY_KEY = 255
T = TypeVar("T")


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


def _idempotency_key(headers: Mapping[str, str], publisher: Publisher) -> str | None:
    """The request's Idempotency-Key, scoped to its publisher; None without one."""
    key = headers.get("Idempotency-Key")
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


async def counted(hub: Hub, work: Awaitable[T]) -> T:
    """A publish, counted by outcome (and timed when it succeeds)."""
    started = time.perf_counter()
    try:
        result = await work
    except HubError as exc:
        outcome = "unavailable" if isinstance(exc, BrokerUnavailable) else "rejected"
        if exc.status >= 500 and outcome != "unavailable":
            outcome = "error"
        hub.metrics.publishes.labels(outcome).inc()
        raise
    hub.metrics.publishes.labels("ok").inc()
    hub.metrics.publish_latency.observe(time.perf_counter() - started)
    return result


async def publish(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # Shielded: a publish whose client leaves still completes (as the lean front's do).
    return await asyncio.shield(counted(hub, _publish(request, hub)))


async def _publish(request: web.Request, hub: Hub) -> web.Response:
    publisher = hub.publisher_tokens.publisher(publisher_token(request))
    if request.content_type == NDJSON:
        return await _publish_lines(request, hub, publisher)
    if request.content_type != JSON:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON} or {NDJSON}, not {request.content_type!r}"
        )
    body = await _read_body(request, hub.settings.max_body_bytes)
    answer = await publish_json(hub, publisher, request.headers, body)
    return web.Response(body=answer, content_type=JSON)


async def publish_request(hub: Hub, request: RequestView, body: bytes) -> bytes:
    """A whole `application/json` publish request (as the lean front reads one)."""
    publisher = hub.publisher_tokens.publisher(publisher_token(request))
    return await publish_json(hub, publisher, request.headers, body)


async def publish_json(
    hub: Hub, publisher: Publisher, headers: Mapping[str, str], body: bytes
) -> bytes:
    """An `application/json` publish whose body has been read: the answer's JSON."""
    messages, batch = _messages(hub, publisher, loads(body))
    idempotency = _idempotency(_idempotency_key(headers, publisher), body)
    results = await hub.broker.publish(messages, idempotency)
    answer = {"results": [{"ids": ids} for ids in results]} if batch else {"ids": results[0]}
    return orjson.dumps(answer)


async def _line_groups(request: web.Request, limit: int) -> AsyncIterator[list[bytes]]:
    """Body lines as they arrive, a list per read; a line longer than `limit` gets 413."""
    buffer = bytearray()
    async for chunk in request.content.iter_any():
        buffer += chunk
        end = buffer.rfind(b"\n")
        if end >= 0:
            lines = bytes(buffer[:end]).split(b"\n")
            del buffer[: end + 1]
            yield lines
        if len(buffer) > limit:
            raise PayloadTooLarge(f"a line is over {limit} bytes")
    if buffer:
        yield [bytes(buffer)]


class _Lines:
    """NDJSON publishing: lines parsed as they arrive, published together per read.

    Without an Idempotency-Key, the lines one read brought are one atomic
    publish (one broker call). With one, each line is keyed by its number and
    published on its own, so a retried request publishes only the lines the
    first attempt did not.
    """

    def __init__(self, hub: Hub, publisher: Publisher, scoped_key: str | None) -> None:
        self.hub = hub
        self.publisher = publisher
        self.scoped_key = scoped_key
        self.results: list[dict[str, Any]] = []
        self.number = 0  # lines read
        self.at = 1  # the line an error concerns: the first one not published
        self._parsed: list[tuple[int, bytes, Message]] = []

    def parse(self, line: bytes) -> None:
        self.number += 1
        if not line.strip():
            return
        if not self._parsed:
            self.at = self.number
        s = self.hub.settings
        try:
            message = parse_message(
                loads(line), max_payload_bytes=s.max_payload_bytes, max_targets=s.max_targets
            )
            _authorize(self.publisher, message)
        except HubError:
            self.at = self.number
            raise
        self._parsed.append((self.number, line, message))

    async def publish(self) -> None:
        """Everything parsed so far; on an error, what was published before it stays."""
        parsed, self._parsed = self._parsed, []
        broker = self.hub.broker
        if self.scoped_key is None:
            for start in range(0, len(parsed), self.hub.settings.max_batch_size):
                group = parsed[start : start + self.hub.settings.max_batch_size]
                self.at = group[0][0]
                answers = await broker.publish([message for _, _, message in group])
                self.results += [{"ids": ids} for ids in answers]
        else:
            for number, line, message in parsed:
                self.at = number
                keyed = _idempotency(f"{self.scoped_key}\0{number}", line)
                (ids,) = await broker.publish([message], keyed)
                self.results.append({"ids": ids})
        self.at = self.number + 1


async def _publish_lines(request: web.Request, hub: Hub, publisher: Publisher) -> web.Response:
    """One message per line, published as soon as its line has arrived."""
    lines = _Lines(hub, publisher, _idempotency_key(request.headers, publisher))
    try:
        async for group in _line_groups(request, hub.settings.max_payload_bytes * 2 + 65536):
            try:
                for line in group:
                    lines.parse(line)
            except HubError:
                failed_at = lines.at
                await lines.publish()  # the good lines before the bad one are published
                lines.at = failed_at
                raise
            await lines.publish()
    except HubError as exc:
        # The lines before the failed one stay published; the answer says how many.
        exc.detail = f"line {lines.at}: {exc.detail}"
        exc.extra["published"] = len(lines.results)
        raise
    return web.Response(body=orjson.dumps({"results": lines.results}), content_type=JSON)
