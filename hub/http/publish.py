"""`POST /publish` at the HTTP edge: bodies and NDJSON lines read, answers written.

The publishing itself (authorization, idempotency, batches, the broker) is
`hub.delivery.publishing`. aiohttp's handler serves every publish the lean
front passes on; `answer` is the front's whole answer to a JSON publish it
read itself, its errors rendered as aiohttp's are (`hub.http.problem`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from aiohttp import web

from hub.auth.extract import publisher_token
from hub.auth.verify import Publisher
from hub.delivery.publishing import (
    counted,
    idempotency_key,
    publish_json,
    publish_lines,
    publish_request,
)
from hub.errors import BrokerUnavailable, HubError, PayloadTooLarge, UnsupportedMediaType
from hub.http.body import read_body
from hub.http.head import JSON, answer_head
from hub.http.problem import CONTENT_TYPE as PROBLEM
from hub.http.problem import error_answer
from hub.http.state import HUB, Hub
from hub.requestview import RequestView

NDJSON = "application/x-ndjson"


async def publish(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # Shielded: a publish whose client leaves still completes (as the lean front's do).
    return await asyncio.shield(counted(hub, _publish(request, hub)))


async def publisher_known(request: web.Request) -> Publisher:
    """The request's publisher (Unauthorized if its token does not pass)."""
    tokens = request.app[HUB].publisher_tokens
    return await tokens.fresh(lambda: tokens.publisher(publisher_token(request)))


async def _publish(request: web.Request, hub: Hub) -> web.Response:
    publisher = await publisher_known(request)
    if request.content_type == NDJSON:
        scoped_key = idempotency_key(request.headers, publisher)
        limit = hub.settings.max_payload_bytes * 2 + 65536
        answer = await publish_lines(hub, publisher, scoped_key, _line_groups(request, limit))
    elif request.content_type == JSON:
        body = await read_body(request, hub.settings.max_body_bytes)
        answer = await publish_json(hub, publisher, request.headers, body)
    else:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON} or {NDJSON}, not {request.content_type!r}"
        )
    return web.Response(body=answer, content_type=JSON)


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


class Answer(NamedTuple):
    """The front's answer to a publish: what it writes, and what it logs and does after."""

    status: int
    data: bytes  # the head and the body
    close: bool  # the connection closes once it is written


async def answer(
    hub: Hub, request: RequestView, body: bytes, closing: Callable[[], bool]
) -> Answer:
    """Publishes a whole `application/json` request the front read and makes its answer;
    an error is the same problem+json aiohttp's middleware answers. The connection closes
    after it when the client asked, the hub failed unexpectedly, or the front is `closing`
    once the publish is done.
    """
    close = "close" in request.headers.get("Connection", "").lower()
    try:
        content = await counted(hub, publish_request(hub, request, body))
        status, content_type = 200, JSON
        headers: dict[str, str] = {}
    except Exception as exc:
        status, headers, content = error_answer(exc, "POST /publish")
        content_type = PROBLEM
        close = close or (status >= 500 and not isinstance(exc, HubError))
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the front's own: the client left, or the shutdown deadline passed
        # A cancellation from below that is not the front's must not leave the publisher
        # unanswered: whether it was written is unknown, so it retries with its key.
        stray = BrokerUnavailable("the publish was interrupted; retry with its Idempotency-Key")
        status, headers, content = error_answer(stray, "POST /publish")
        content_type = PROBLEM
    close = close or closing()
    head = answer_head(status, content_type, len(content), headers, close)
    return Answer(status, head + content, close)
