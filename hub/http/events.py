"""`GET /events` through aiohttp: the streams the lean front passes on, admitted as the
front admits them (`hub.delivery.admission`)."""

from __future__ import annotations

import contextlib
import socket

from aiohttp import HttpVersion11, web

from hub.auth.extract import subscriber_token
from hub.delivery.admission import admit
from hub.delivery.parameters import NO_BODY, StreamBody, stream_body
from hub.delivery.stream import ClientGone, chunk, open_stream, room_now, send_timeout, timed_write
from hub.errors import UnsupportedMediaType
from hub.http.body import read_body_within
from hub.http.head import JSON
from hub.http.state import HUB

# A fetch client's parameters: a few topics and a cursor, never megabytes.
MAX_PARAMETERS_BODY = 65536
PARAMETERS_TIMEOUT = 10.0


async def events(request: web.Request) -> web.StreamResponse:
    """aiohttp's handler: the streams the front passes on (HTTP/1.0, a request with a
    body or a header twice, any request a plain aiohttp server gets), and every
    `POST /events` (a fetch client's, its parameters maybe in a JSON body)."""
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])  # HEAD: no stream
    hub = request.app[HUB]
    body = NO_BODY
    if request.method == "POST":
        await subscriber_known(request)  # cached for admission: no body read for a stranger
        body = await _parameters(request)
    tokens = hub.subscriber_tokens
    opening = await tokens.fresh(lambda: admit(request, hub, body))
    sink = ResponseSink(request, send_timeout(hub.settings))
    try:
        await open_stream(hub, opening, sink)
    finally:
        opening.release(hub)
    return sink.response


async def subscriber_known(request: web.Request) -> None:
    """The request's subscriber token passes (Unauthorized otherwise)."""
    hub = request.app[HUB]
    tokens = hub.subscriber_tokens
    await tokens.fresh(lambda: tokens.subscriber(subscriber_token(request, hub.settings)))


async def _parameters(request: web.Request) -> StreamBody:
    declared = "Content-Type" in request.headers  # aiohttp reads none as octet-stream
    if request.body_exists and declared and request.content_type != JSON:
        raise UnsupportedMediaType(f"Content-Type must be {JSON}, not {request.content_type!r}")
    raw = await read_body_within(request, MAX_PARAMETERS_BODY, PARAMETERS_TIMEOUT)
    return stream_body(raw)


# As the front's streams; set in this order, as aiohttp-sse set them before.
_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",  # nginx passes each frame on at once
}
_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)
_TCP = (socket.AF_INET, socket.AF_INET6)


class ResponseSink:
    """A stream's bytes through aiohttp's streaming response."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self.response = web.StreamResponse(headers=_HEADERS)
        # The socket's TCP_USER_TIMEOUT before the stream set it (the connection may outlive it).
        self._saved: tuple[socket.socket, int, int] | None = None

    async def start(self) -> None:
        if self._request.version >= HttpVersion11:
            self.response.enable_chunked_encoding()  # HTTP/1.0: the end is the connection's
        self._set_user_timeout()
        await self.response.prepare(self._request)

    def _set_user_timeout(self) -> None:
        """A client that acknowledges nothing for the send timeout is dropped by the kernel,
        long before writes would block on a full buffer."""
        transport = self._request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if _USER_TIMEOUT is None or sock is None or sock.family not in _TCP:
            return
        self._saved = (sock, _USER_TIMEOUT, sock.getsockopt(socket.IPPROTO_TCP, _USER_TIMEOUT))
        sock.setsockopt(socket.IPPROTO_TCP, _USER_TIMEOUT, int(self._timeout * 1000))

    async def write(self, data: bytes) -> None:
        try:
            await timed_write(self.response.write(data), self._timeout, self.abort)
        except (ConnectionError, RuntimeError):
            raise ClientGone from None

    def direct(self, data: bytes) -> bool:
        """One frame to the socket now, framed as aiohttp's writer would, or False."""
        transport = self._request.transport
        if transport is None or not room_now(transport):
            return False
        transport.write(chunk(data) if self.response.chunked else data)
        return True

    def abort(self) -> None:
        if self._request.transport is not None:
            self._request.transport.abort()

    async def finish(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.response.write_eof()
        transport = self._request.transport
        if self._saved is not None and transport is not None and not transport.is_closing():
            # Only while the connection is open: a closed socket's number may be reused.
            sock, option, value = self._saved
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
