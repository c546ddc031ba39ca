"""Publishing: messages authorized against the publisher's grants, `Idempotency-Key`
scoping, batches and NDJSON lines, the broker's publish, and the count of outcomes.

What the HTTP edge reads (a body, its lines, a header) comes in as bytes and
mappings; the answers go back as JSON bytes. Shared by aiohttp's handler and
the lean front (`hub.http.publish`), so both publish exactly alike.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterable, Awaitable, Mapping
from typing import Any, TypeVar

import orjson

from hub.auth.extract import publisher_token
from hub.auth.verify import Publisher
from hub.broker import Idempotency
from hub.channels import allowed
from hub.delivery.engine import Engine
from hub.errors import BadRequest, BrokerUnavailable, Forbidden, HubError, PayloadTooLarge
from hub.message import Message, loads, parse_message
from hub.requestview import RequestView

_MAX_IDEMPOTENCY_KEY = 255
T = TypeVar("T")


def authorize(publisher: Publisher, message: Message, where: str = "") -> None:
    """Raises Forbidden unless the publisher's grants allow every channel of `message`."""
    for channel in message.channels:
        if not allowed(channel, publisher.grants):
            raise Forbidden(f"{where}the token does not allow publishing to {channel!r}")


def idempotency_key(headers: Mapping[str, str], publisher: Publisher) -> str | None:
    """The request's Idempotency-Key, scoped to its publisher; None without one."""
    key = headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} printable characters")
    return f"{publisher.name}\0{key}"


def idempotency(scoped_key: str | None, body: bytes) -> Idempotency | None:
    """The key with the body's fingerprint: a retry with another body is refused."""
    if scoped_key is None:
        return None
    return Idempotency(scoped_key, hashlib.sha256(body).hexdigest())


def messages(hub: Engine, publisher: Publisher, payload: Any) -> tuple[list[Message], bool]:
    """A parsed JSON body's messages, each validated and authorized, and whether it was a
    batch (a list)."""
    s = hub.settings
    batch = isinstance(payload, list)
    items = payload if batch else [payload]
    if batch and not items:
        raise BadRequest("a batch must hold at least one message")
    if len(items) > s.max_batch_size:
        raise PayloadTooLarge(f"a batch holds at most {s.max_batch_size} messages")
    parsed = []
    for n, item in enumerate(items):
        where = f"message {n}: " if batch else ""
        message = parse_message(
            item, max_payload_bytes=s.max_payload_bytes, max_targets=s.max_targets, where=where
        )
        authorize(publisher, message, where)
        parsed.append(message)
    return parsed, batch


async def counted(hub: Engine, work: Awaitable[T]) -> T:
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


async def publish_request(hub: Engine, request: RequestView, body: bytes) -> bytes:
    """A whole `application/json` publish request (as the lean front reads one)."""
    tokens = hub.publisher_tokens
    publisher = await tokens.fresh(lambda: tokens.publisher(publisher_token(request)))
    return await publish_json(hub, publisher, request.headers, body)


async def publish_json(
    hub: Engine, publisher: Publisher, headers: Mapping[str, str], body: bytes
) -> bytes:
    """An `application/json` publish whose body has been read: the answer's JSON."""
    parsed, batch = messages(hub, publisher, loads(body))
    keyed = idempotency(idempotency_key(headers, publisher), body)
    results = await hub.broker.publish(parsed, keyed)
    answer = {"results": [{"ids": ids} for ids in results]} if batch else {"ids": results[0]}
    return orjson.dumps(answer)


class _Lines:
    """NDJSON publishing: lines parsed as they arrive, published together per read.

    Without an Idempotency-Key, the lines one read brought are one atomic
    publish (one broker call). With one, each line is keyed by its number and
    published on its own, so a retried request publishes only the lines the
    first attempt did not.
    """

    def __init__(self, hub: Engine, publisher: Publisher, scoped_key: str | None) -> None:
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
            authorize(self.publisher, message)
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
                keyed = idempotency(f"{self.scoped_key}\0{number}", line)
                (ids,) = await broker.publish([message], keyed)
                self.results.append({"ids": ids})
        self.at = self.number + 1


async def publish_lines(
    hub: Engine, publisher: Publisher, scoped_key: str | None, groups: AsyncIterable[list[bytes]]
) -> bytes:
    """One message per line, each group of lines published as soon as it has arrived: the
    answer's JSON. On an error, the lines before the failed one stay published; the error
    says which line failed and how many were published."""
    lines = _Lines(hub, publisher, scoped_key)
    try:
        async for group in groups:
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
        exc.detail = f"line {lines.at}: {exc.detail}"
        exc.extra["published"] = len(lines.results)
        raise
    return orjson.dumps({"results": lines.results})
