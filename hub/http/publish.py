"""`POST /publish` at the HTTP edge: bodies and NDJSON lines read, answers written.

The publishing itself (authorization, idempotency, batches, the broker) is
`hub.delivery.publishing`, shared with the lean front. aiohttp's handler
serves every publish the front passes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from hub.auth.extract import publisher_token
from hub.delivery.publishing import (
    counted,
    idempotency_key,
    publish_json,
    publish_lines,
)
from hub.errors import PayloadTooLarge, UnsupportedMediaType
from hub.http.state import HUB, Hub

JSON = "application/json"
NDJSON = "application/x-ndjson"


async def publish(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # Shielded: a publish whose client leaves still completes (as the lean front's do).
    return await asyncio.shield(counted(hub, _publish(request, hub)))


async def _publish(request: web.Request, hub: Hub) -> web.Response:
    publisher = hub.publisher_tokens.publisher(publisher_token(request))
    if request.content_type == NDJSON:
        scoped_key = idempotency_key(request.headers, publisher)
        limit = hub.settings.max_payload_bytes * 2 + 65536
        answer = await publish_lines(hub, publisher, scoped_key, _line_groups(request, limit))
    elif request.content_type == JSON:
        body = await _read_body(request, hub.settings.max_body_bytes)
        answer = await publish_json(hub, publisher, request.headers, body)
    else:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON} or {NDJSON}, not {request.content_type!r}"
        )
    return web.Response(body=answer, content_type=JSON)


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
