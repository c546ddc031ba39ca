"""The lean front: every connection's heads read by llhttp, streams and JSON publishes served here.

Under aiohttp an idle stream costs its per-connection and per-request
machinery (~11 KiB and ~100 µs to accept), and every publish pays its request
objects. Here every connection starts as a `_Connection` that reads request
heads with llhttp (`hub.http.head`). A plain `GET /events` that admission accepts
is streamed by the connection itself; a plain `POST /publish` with an
`application/json` body of a known length is answered by it (keep-alive,
pipelined requests in order, errors as the same problem+json). A head llhttp
refuses is answered `400` here, a head not complete in time `408`, an HTTP
version other than 1.x `505`, a transfer coding other than `chunked` `501`.
Anything else — another path or method, a browser's request (CORS), a refusal
of a stream, a failure before a stream's response starts — is handed, bytes
and all, to aiohttp's own protocol. The connection stays in front of it,
watching request boundaries, so a head that stalls is cut off at the same
deadline whoever serves the connection. (A body aiohttp reads has no such
deadline: an NDJSON publish is a long-running producer's stream by design.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from typing import cast

import httptools
from aiohttp import web

from hub.delivery.admission import Opening, admit
from hub.delivery.publishing import counted, publish_request
from hub.delivery.stream import ClientGone, chunk, open_stream, room_now, send_timeout, timed_write
from hub.errors import HeadTimeout, HubError, MalformedHead
from hub.http.accesslog import log_access
from hub.http.head import (
    Head,
    HeadReader,
    answer_head,
    head_end,
    refusal,
    stream_head,
)
from hub.http.problem import CONTENT_TYPE as PROBLEM
from hub.http.problem import error_answer
from hub.http.publish import JSON
from hub.http.state import Hub
from hub.logs import redact

log = logging.getLogger(__name__)
access_log = logging.getLogger("aiohttp.access")

# Heads larger than this go to aiohttp and its limits (a long query string is answered there).
MAX_HEAD = 8192
# A request's head (and a JSON publish's body) must arrive within this many seconds.
HEAD_TIMEOUT = 10.0
# An idle keep-alive connection is closed after this long (as aiohttp's default).
KEEP_ALIVE = 3630.0
# Pipelined bytes read while a publish is answered; beyond this the kernel holds the rest.
_MAX_WAITING = 65536
# How often the front looks for connections past their deadline (one timer for all).
SWEEP = 1.0
_TARGET = re.compile(rb"/events(\?[\x21-\x22\x24-\x7e]*)?")
# Requests with these are passed on: a body, a protocol change, or a browser's (CORS).
_PASSED_ON = ("Content-Length", "Transfer-Encoding", "Upgrade", "Expect")
_PUBLISH_PASSED_ON = ("Transfer-Encoding", "Content-Encoding", "Upgrade", "Expect", "Origin")
# aiohttp's own limits: a head beyond them is passed on for aiohttp to refuse.
_MAX_FIELD = 8190
_MAX_FIELDS = 128


class Front:
    """The protocol factory the listening sockets use; aiohttp's server behind it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._server: web.Server | None = None
        # Connections still ours (not handed to aiohttp): idle ones are closed on shutdown.
        self.connections: set[_Connection] = set()
        # Publishes being answered, until they finish (even when their client has left).
        self.publishing: set[asyncio.Task[None]] = set()
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connections waiting for a request, with their deadlines: one sweeping timer
        # serves them all (a timer per connection is a large part of an accept's cost).
        self._deadlines: dict[_Connection, float] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    def attach(self, server: web.Server) -> None:
        """aiohttp's server (`AppRunner.server`), for the connections handed to it."""
        self._server = server
        self._loop = asyncio.get_running_loop()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def aiohttp_protocol(self) -> asyncio.Protocol:
        assert self._server is not None, "attach() comes before the first connection"
        return self._server()

    def arm(self, connection: _Connection, timeout: float) -> None:
        loop = self._loop
        assert loop is not None
        self._deadlines[connection] = loop.time() + timeout
        if self._sweeping is None:
            self._sweeping = loop.call_later(SWEEP, self._sweep)

    def disarm(self, connection: _Connection) -> None:
        self._deadlines.pop(connection, None)

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for connection in [c for c, at in self._deadlines.items() if at <= now]:
            del self._deadlines[connection]
            connection.expire()
        self._sweeping = loop.call_later(SWEEP, self._sweep) if self._deadlines else None

    def close_idle(self) -> None:
        """No more requests: connections with nothing in flight close now, the others
        after their answer."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_if_idle()

    async def on_shutdown(self, app: web.Application) -> None:
        """After the drain ended every stream: waits for them to write their last frames
        and for publishes in flight to be answered (aiohttp's connections are its own)."""
        self.close_idle()
        tasks = {c.task for c in self.connections if c.task is not None} | self.publishing
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.hub.settings.shutdown_timeout)
            for connection in [c for c in self.connections if c.task in late]:
                connection.abort()  # connection_lost cancels a stream's task
            for task in late:
                task.cancel()  # as aiohttp does with handlers at the deadline
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None


def _served_here(head: Head) -> str | None:
    """ "stream" or "publish" for the requests the front serves itself; None to pass on."""
    if head.version != "1.1" or len(head.fields) > _MAX_FIELDS or head.duplicated():
        return None  # any header twice: aiohttp decides what that means
    if any(len(name) + len(value) + 2 > _MAX_FIELD for name, value in head.fields):
        return None
    headers = head.headers
    if head.method == "GET" and _TARGET.fullmatch(head.target):
        return None if any(name in headers for name in _PASSED_ON) else "stream"
    if head.method != "POST" or head.target != b"/publish":
        return None
    if any(name in headers for name in _PUBLISH_PASSED_ON):
        return None
    length = headers.get("Content-Length", "")
    if not (length.isdigit() and length.isascii()) or len(length) > 18:
        return None
    if headers.get("Content-Type", "").lower() != JSON:
        return None  # NDJSON, parameters, anything else: aiohttp reads it
    head.length = int(length)
    return "publish"


class _Watch:
    """Follows the requests on a connection aiohttp serves: a head that starts must end
    within the head timeout. llhttp refusing the bytes ends the watch (aiohttp, on the
    same parser, refuses them too and closes)."""

    __slots__ = ("_connection", "_parser")

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self._connection.arm(HEAD_TIMEOUT)

    def on_headers_complete(self) -> None:
        self._connection.disarm()

    def feed(self, data: bytes) -> bool:
        while True:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # aiohttp upgrades nothing: it reads what follows as requests, so do we.
                data = data[exc.args[0] :]
                self._parser = httptools.HttpRequestParser(self)
            except httptools.HttpParserError:
                return False
            else:
                return True


class _Connection(asyncio.Protocol):
    """Reads requests; streams an admitted `GET /events` itself (it is the stream's Sink),
    answers JSON publishes, or hands the connection to aiohttp."""

    __slots__ = (
        "_body",
        "_buffer",
        "_delegate",
        "_drained",
        "_fed",
        "_front",
        "_paused",
        "_pending",
        "_reader",
        "_reading_paused",
        "_served",
        "_stream",
        "_timeout",
        "_transport",
        "_watch",
        "task",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        # What arrived and is not yet answered: the next request's bytes.
        self._buffer = bytearray()
        # The head being read, and how much of the buffer it has been fed.
        self._reader: HeadReader | None = None
        self._fed = 0
        # A publish whose body is on its way: its head, where the body starts and ends.
        self._body: tuple[Head, int, int] | None = None
        # aiohttp's protocol once the connection is handed over, and the watch on it.
        self._delegate: asyncio.Protocol | None = None
        self._watch: _Watch | None = None
        self.task: asyncio.Task[None] | None = None
        self._stream = False
        self._served = False
        self._paused = False
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._pending = b""  # the response head, sent with the first frame
        self._timeout = 0.0

    # -- reading requests ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._front.connections.add(self)
        self.arm(HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self._delegate is not None:
            if self._watch is not None and not self._watch.feed(data):
                self._watch = None
            self._delegate.data_received(data)
            return
        if self._stream:
            return  # a stream's client has nothing more to say; what it sends is ignored
        if self._served and not self._buffer and self.task is None:
            self.arm(HEAD_TIMEOUT)  # a new request on a kept-alive connection
        self._buffer += data
        if self.task is None:
            self._read()
        elif len(self._buffer) > _MAX_WAITING:
            self._pause_reading()  # pipelined requests wait for the answer before them

    def eof_received(self) -> bool | None:
        return self._delegate.eof_received() if self._delegate is not None else None

    def _read(self) -> None:
        buffer = self._buffer
        if self._body is not None:  # only the body's length is checked until it is all here
            waiting, start, size = self._body
            if len(buffer) >= size:
                self._body = None
                self._begin(waiting, bytes(buffer[start:size]), size)
            return
        if self._reader is None:
            self._reader, self._fed = HeadReader(), 0
        try:
            head = self._reader.feed(bytes(buffer[self._fed :]))
        except MalformedHead as exc:
            self._refuse(exc)
            return
        self._fed = len(buffer)
        if head is None:
            if len(buffer) > MAX_HEAD:
                self._hand_over()
            return
        self._reader = None
        error = refusal(head)
        if error is not None:
            self._refuse(error)
            return
        end = head_end(buffer)
        kind = _served_here(head) if end <= MAX_HEAD else None
        if kind == "stream":
            self._open(head, end == len(buffer))
        elif kind is None or head.length > self._front.hub.settings.max_body_bytes:
            self._hand_over()  # aiohttp answers (413 for a body over the limit)
        elif len(buffer) >= (size := end + head.length):
            self._begin(head, bytes(buffer[end:size]), size)
        else:
            self._body = (head, end, size)
            self.arm(HEAD_TIMEOUT)  # the body has as long as the head had

    def _begin(self, request: Head, body: bytes, size: int) -> None:
        """Answer a publish read whole (its `size` bytes leave the buffer)."""
        self.disarm()
        del self._buffer[:size]
        task = asyncio.get_running_loop().create_task(self._answer(request, body))
        self.task = task
        self._front.publishing.add(task)
        task.add_done_callback(self._front.publishing.discard)

    def _open(self, request: Head, alone: bool) -> None:
        if not alone or self._served:
            self._hand_over()  # bytes after the head, or a stream after publishes: aiohttp's
            return
        try:
            opening = admit(request, self._front.hub)
        except Exception:
            self._hand_over()  # aiohttp answers the refusal (or the failure)
            return
        self.disarm()
        self._stream = True
        origin = request.headers.get("Origin")
        task = self._serve(opening, redact(request.path_qs), origin)
        self.task = asyncio.get_running_loop().create_task(task)

    def _refuse(self, error: HubError) -> None:
        """Answers a request the front will not serve nor pass on, and closes."""
        self.disarm()
        self._stream = True  # nothing more is read
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        status, headers, body = error_answer(error, "a request")
        transport.write(answer_head(status, PROBLEM, len(body), headers, True) + body)
        transport.close()
        log.debug("refused a request: %s", error.detail)

    def _hand_over(self) -> None:
        """aiohttp serves the connection from the request being read on; the connection
        stays in front of it to keep the head deadline."""
        self.disarm()
        self._front.connections.discard(self)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        protocol = self._front.aiohttp_protocol()
        self._delegate = protocol
        protocol.connection_made(transport)
        data, self._buffer, self._reader = bytes(self._buffer), bytearray(), None
        self._watch = _Watch(self)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if data:
            self.data_received(data)

    def arm(self, timeout: float) -> None:
        self._front.arm(self, timeout)

    def disarm(self) -> None:
        self._front.disarm(self)

    def expire(self) -> None:
        """No whole request in time: an idle keep-alive connection closes; a partial
        request is answered 408; aiohttp's connection is closed."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._served and self._paused and self._delegate is None:
            transport.abort()  # its client stopped reading answers: nothing would flush
        elif self._delegate is not None or (self._served and not self._buffer):
            transport.close()  # idle, or aiohttp's with a head stalled
        else:
            self._refuse(HeadTimeout("the request did not arrive in time"))

    @property
    def streaming(self) -> bool:
        return self._stream and self.task is not None and not self.task.done()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def close_if_idle(self) -> None:
        """On shutdown: a connection with nothing in flight closes now."""
        if self.task is None and self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self._front.connections.discard(self)
        if self._delegate is not None:
            self._delegate.connection_lost(exc)
            return
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
        if self.task is not None and self._stream:
            self.task.cancel()  # as aiohttp does for a handler whose client left
        # A publish in flight completes: whether it was applied must not depend on the client.

    def pause_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.pause_writing()
        self._paused = True

    def resume_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.resume_writing()
            return
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self._stream and self._served and self.task is None:
            self._next()

    # -- publishes ----------------------------------------------------------------------------

    async def _answer(self, request: Head, body: bytes) -> None:
        hub = self._front.hub
        started = time.monotonic()
        close = "close" in request.headers.get("Connection", "").lower()
        try:
            answer = await counted(hub, publish_request(hub, request, body))
            status, content_type = 200, JSON
            headers: dict[str, str] = {}
        except Exception as exc:
            status, headers, answer = error_answer(exc, "POST /publish")
            content_type = PROBLEM
            close = close or (status >= 500 and not isinstance(exc, HubError))
        self.task = None
        self._served = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = close or self._front.closing
        transport.write(answer_head(status, content_type, len(answer), headers, close) + answer)
        self._log_access("POST", "/publish", status, time.monotonic() - started)
        if close:
            transport.close()
        else:
            self._next()

    def _next(self) -> None:
        """After an answer: the next request, once the client reads answers again."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._paused:
            self._pause_reading()  # resume_writing comes back here, or the send timeout
            self.arm(send_timeout(self._front.hub.settings))
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self.arm(HEAD_TIMEOUT if self._buffer else KEEP_ALIVE)
        if self._buffer:
            self._read()

    # -- the stream (the Sink of `hub.delivery.stream.open_stream`) ---------------------------

    async def _serve(self, opening: Opening, path_qs: str, origin: str | None) -> None:
        front = self._front
        hub = front.hub
        self._timeout = send_timeout(hub.settings)
        self._pending = stream_head(hub.cors.headers_for(origin))
        started = time.monotonic()
        failed = False
        try:
            await open_stream(hub, opening, self)
        except Exception:
            # Raised before the response started (open_stream handles the rest): aiohttp
            # answers while the head is still here, else the connection is dropped.
            failed = True
        finally:
            opening.release(hub)
            if not failed and not self._pending:
                self._log_access("GET", path_qs, 200, time.monotonic() - started)
        if failed and self._buffer:
            self.task = None
            self._stream = False
            self._pending = b""
            self._hand_over()
        elif failed:
            self.abort()

    def _log_access(self, method: str, path_qs: str, status: int, seconds: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        peer = self._transport.get_extra_info("peername") if self._transport else None
        host = peer[0] if isinstance(peer, tuple) else None
        log_access(access_log, host, method, path_qs, status, seconds)

    async def start(self) -> None:
        """The response head waits in `_pending` for the first frame: one write for both."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ClientGone
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                millis = int(self._timeout * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, millis)
        self._buffer = bytearray()  # kept until now for a hand-over

    async def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ClientGone
        transport.write(self._chunk(data))
        if self._paused:
            await timed_write(self._drain(), self._timeout, self.abort)

    def _chunk(self, data: bytes) -> bytes:
        framed = chunk(data)
        if self._pending:
            framed, self._pending = self._pending + framed, b""
        return framed

    async def _drain(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await self._drained
        except ConnectionError:
            raise ClientGone from None
        finally:
            self._drained = None

    def direct(self, data: bytes) -> bool:
        transport = self._transport
        if transport is None or not room_now(transport):
            return False
        if self._pending:
            transport.write(self._chunk(data))
        else:  # every live event of a caught-up stream: `chunk` inlined
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def finish(self) -> None:
        """The last chunk; the connection then closes (once what is buffered is sent)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(self._pending + b"0\r\n\r\n")
            transport.close()
