"""Reading a durable stream: catch-up (with ETags), long-poll, and SSE (`data` and `control`
events; base64 for a stream that is not text)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from hub.durable import jsonmode, offsets
from hub.durable.store import Read, StreamGone, StreamNotFound, is_json, media_type
from hub.http.durable import (
    STORE,
    authorize,
    etag,
    name_of,
    refusal,
)
from hub.http.state import HUB

CACHE = "public, max-age=60, stale-while-revalidate=300"
# An SSE connection ends after about this long, so that caches can collapse new readers.
SSE_LIFETIME = 60.0


def _offset(request: web.Request) -> str | None:
    given = request.query.getall("offset", [])
    if not given:
        return None
    if len(given) > 1:
        raise refusal(400, "one offset per request")
    offset = offsets.requested(given[0])
    if offset is None:
        raise refusal(400, "the offset is not one this hub gave out, -1 or now")
    return offset


def _body(read: Read, content_type: str) -> bytes:
    data = [m.data for m in read.messages]
    return jsonmode.as_array(data) if is_json(content_type) else b"".join(data)


async def read(request: web.Request) -> web.StreamResponse:
    authorize(request, write=False)
    offset = _offset(request)
    live = request.query.get("live")
    if live in ("long-poll", "sse") and offset is None:
        raise refusal(400, f"live={live} needs an offset")
    store, name = request.app[STORE], name_of(request)
    try:
        snapshot = await store.head(name)
    except StreamGone:
        raise refusal(410, "the stream is gone") from None
    if snapshot is None:
        raise refusal(404, "no such stream")
    content_type = snapshot.config.content_type
    if live == "sse":
        start = snapshot.tail if offset == offsets.NOW else offset or offsets.START
        return await _sse(request, start, content_type)
    if offset == offsets.NOW and live != "long-poll":
        await store.read(name, snapshot.tail)  # a read: renews a sliding TTL
        headers = {
            "Content-Type": content_type,
            "Stream-Next-Offset": snapshot.tail,
            "Stream-Up-To-Date": "true",
            "Cache-Control": "no-store",
        }
        if snapshot.closed:
            headers["Stream-Closed"] = "true"
        return web.Response(body=b"[]" if is_json(content_type) else b"", headers=headers)
    start = snapshot.tail if offset == offsets.NOW else offset or offsets.START
    try:
        found = await store.read(name, start)
        if live == "long-poll" and not found.messages:
            waited = await _long_poll(request, start, found)
            if isinstance(waited, web.Response):
                return waited
            found = waited
    except StreamGone:
        raise refusal(410, "the stream is gone") from None
    except StreamNotFound:
        raise refusal(404, "no such stream") from None
    return _caught_up(request, offset, found, content_type)


async def _long_poll(request: web.Request, start: str, found: Read) -> Read | web.Response:
    cursor = offsets.response_cursor(request.query.get("cursor"))
    if not found.closed:
        timeout = request.app[HUB].settings.durable_streams_long_poll_timeout
        found = await request.app[STORE].wait(name_of(request), start, timeout)
    if found.messages:
        return found
    headers = {"Stream-Next-Offset": start, "Stream-Up-To-Date": "true", "Stream-Cursor": cursor}
    if found.closed:
        headers["Stream-Closed"] = "true"
    return web.Response(status=204, headers=headers)


def _caught_up(
    request: web.Request, offset: str | None, found: Read, content_type: str
) -> web.Response:
    end = found.messages[-1].offset if found.messages else found.tail
    at_tail = end == found.tail
    headers = {"Content-Type": content_type, "Stream-Next-Offset": end, "Cache-Control": CACHE}
    if not found.more:  # a page's worth: the reader asks again from `end`
        headers["Stream-Up-To-Date"] = "true"
    if request.query.get("live") == "long-poll":
        headers["Stream-Cursor"] = offsets.response_cursor(request.query.get("cursor"))
    closed = found.closed and at_tail and not found.more
    if closed:
        headers["Stream-Closed"] = "true"
    tag = etag(name_of(request), offset or offsets.START, end, closed)
    headers["ETag"] = tag
    if request.headers.get("If-None-Match") == tag:
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(body=_body(found, content_type), headers=headers)


def _sse_data(payload: str) -> bytes:
    lines = payload.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return ("".join(f"data:{line}\n" for line in lines) + "\n").encode()


def _control(fields: dict[str, Any]) -> bytes:
    return b"event: control\n" + _sse_data(json.dumps(fields, separators=(",", ":")))


def _payload(data: bytes, kind: str, textual: bool) -> str:
    if not textual:
        return base64.b64encode(data).decode()
    if kind == "application/json":
        return jsonmode.as_array([data]).decode()
    return data.decode("utf-8", "replace")


def _control_fields(position: str, tail: str, client_cursor: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "streamNextOffset": position,
        "streamCursor": offsets.response_cursor(client_cursor),
    }
    if position >= tail:
        fields["upToDate"] = True
    return fields


async def _sse(request: web.Request, start: str, content_type: str) -> web.StreamResponse:
    kind = media_type(content_type)
    textual = kind.startswith("text/") or kind == "application/json"
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if not textual:
        headers["stream-sse-data-encoding"] = "base64"
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    store, name = request.app[STORE], name_of(request)
    client_cursor = request.query.get("cursor")
    timeout = request.app[HUB].settings.durable_streams_long_poll_timeout
    position = start
    loop = asyncio.get_running_loop()
    ends = loop.time() + SSE_LIFETIME  # busy or not, the connection ends then
    try:
        found = await store.read(name, position)
        if position == offsets.START:
            position = offsets.ZERO  # the stream's first offset: what a reader resumes from
        while True:
            # Each data event comes with its control event, in one write: a reader that
            # stops at a control event has the data before it.
            for message in found.messages:
                position = message.offset
                frame = b"event: data\n" + _sse_data(_payload(message.data, kind, textual))
                control = _control_fields(position, found.tail, client_cursor)
                await response.write(frame + _control(control))
            if found.closed and position == found.tail:
                await response.write(_control({"streamNextOffset": position, "streamClosed": True}))
                break
            if not found.messages:
                await response.write(_control(_control_fields(position, found.tail, client_cursor)))
            left = ends - loop.time()
            if left <= 0:
                break
            if found.more:  # a page's worth: the next one at once
                found = await store.read(name, position)
                continue
            found = await store.wait(name, position, min(timeout, left))
    except (StreamNotFound, StreamGone, ConnectionError):
        pass
    return response
