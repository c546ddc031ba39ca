"""The lean front: `GET /events` streams and JSON publishes served by a small protocol of our own.

Under aiohttp an idle stream costs its per-connection and per-request
machinery (~11 KiB and ~100 µs to accept), and every publish pays its request
objects. Here every connection starts as a `_Connection` that reads the
request head. A plain `GET /events` that admission accepts is streamed by the
connection itself; a plain `POST /publish` with an `application/json` body of
a known length is answered by it (keep-alive, pipelined requests in order,
errors as the same problem+json). Anything else — another path or method, a
head it does not fully understand, a browser's request (CORS), a refusal of a
stream, a failure before a stream's response starts — is handed, bytes and
all, to aiohttp's own protocol, which answers as it always does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from hub.accesslog import log_access, redact
from hub.errors import HubError
from hub.events import Opening, admit
from hub.problem import CONTENT_TYPE as PROBLEM
from hub.problem import problem_body
from hub.publish import JSON, counted, publish_request
from hub.state import HUB, Hub
from hub.stream import ClientGone, chunk, open_stream, room_now, send_timeout, timed_write

log = logging.getLogger(__name__)
access_log = logging.getLogger("aiohttp.access")

_PREFIXES = (b"GET /events", b"POST /publish ")
# Heads larger than this, or not complete in time, go to aiohttp and its limits.
MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0
# An idle keep-alive connection is closed after this long (as aiohttp's default).
KEEP_ALIVE = 3630.0
# Pipelined bytes read while a publish is answered; beyond this the kernel holds the rest.
_MAX_WAITING = 65536
# How often the front looks for connections past their deadline (one timer for all).
SWEEP = 1.0
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e]*")
_TARGET = re.compile(rb"/events(\?[\x21-\x22\x24-\x7e]*)?")
# Requests with these are passed on: a body, a protocol change, or a browser's (CORS).
_PASSED_ON = ("Content-Length", "Transfer-Encoding", "Upgrade", "Expect")
_PUBLISH_PASSED_ON = ("Transfer-Encoding", "Content-Encoding", "Upgrade", "Expect", "Origin")
# aiohttp's own limits: a head beyond them is passed on for aiohttp to refuse.
_MAX_FIELD = 8190
_MAX_FIELDS = 128


class HubRunner(web.AppRunner):
    """aiohttp's runner with the lean front in front of its server."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return cast(web.Server, Front(server, self.app[HUB]))


class Front:
    """The protocol factory the listening sockets use; aiohttp's server behind it."""

    def __init__(self, server: web.Server, hub: Hub) -> None:
        self._server = server
        self.hub = hub
        # Connections still ours (not handed to aiohttp): idle ones are closed on shutdown.
        self.connections: set[_Connection] = set()
        # Publishes being answered, until they finish (even when their client has left).
        self.publishing: set[asyncio.Task[None]] = set()
        self.closing = False
        self._loop = asyncio.get_running_loop()
        # Connections waiting for a request, with their deadlines: one sweeping timer
        # serves them all (a timer per connection is a large part of an accept's cost).
        self._deadlines: dict[_Connection, float] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    @property
    def streams(self) -> set[_Connection]:
        """The connections streaming events now."""
        return {c for c in self.connections if c.streaming}

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)  # the rest of aiohttp's Server, unchanged

    def arm(self, connection: _Connection, timeout: float) -> None:
        self._deadlines[connection] = self._loop.time() + timeout
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(SWEEP, self._sweep)

    def disarm(self, connection: _Connection) -> None:
        self._deadlines.pop(connection, None)

    def _sweep(self) -> None:
        now = self._loop.time()
        for connection in [c for c, at in self._deadlines.items() if at <= now]:
            del self._deadlines[connection]
            connection.expire()
        self._sweeping = self._loop.call_later(SWEEP, self._sweep) if self._deadlines else None

    def aiohttp_protocol(self) -> asyncio.Protocol:
        return self._server()

    def pre_shutdown(self) -> None:
        self._close_idle()
        self._server.pre_shutdown()

    def _close_idle(self) -> None:
        """No more requests: connections with nothing in flight close now, the others
        after their answer."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_if_idle()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Waits for the streams the drain ended to write their last frames and for publishes
        in flight to be answered, then for aiohttp's connections."""
        self._close_idle()
        tasks = {c.task for c in self.connections if c.task is not None} | self.publishing
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for connection in [c for c in self.connections if c.task in late]:
                connection.abort()  # connection_lost cancels a stream's task
            for task in late:
                task.cancel()  # as aiohttp does with handlers at the deadline
        left = None if deadline is None else max(0.0, deadline - loop.time())
        await self._server.shutdown(left)
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None


class _Head:
    """A parsed `GET /events` or `POST /publish` head: what the handlers read (see
    `RequestView`); `length` is a publish's body length."""

    __slots__ = ("headers", "length", "path_qs", "query", "query_string")

    def __init__(
        self, headers: CIMultiDictProxy[str], url: URL, path_qs: str, length: int = -1
    ) -> None:
        self.headers = headers
        self.query: MultiDictProxy[str] = url.query
        self.query_string = url.query_string
        self.path_qs = path_qs
        self.length = length

    @property
    def cookies(self) -> dict[str, str]:
        """As aiohttp's `request.cookies` reads them (its own parser)."""
        return {
            name: morsel.value
            for name, morsel in parse_cookie_header(self.headers.get("Cookie", ""))
        }


_PUBLISH_URL = URL.build(path="/publish")


def parse_head(head: bytes) -> _Head | None:
    """The head of a plain HTTP/1.1 `GET /events`, or of a `POST /publish` of JSON with a
    Content-Length (`length >= 0`); None for anything else."""
    request_line, *lines = head.split(b"\r\n")
    if len(lines) > _MAX_FIELDS or any(len(line) > _MAX_FIELD for line in lines):
        return None
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    method, target = parts[0], parts[1]
    if method == b"POST" and target == b"/publish":
        return _publish_head(lines)
    if method != b"GET" or not _TARGET.fullmatch(target):
        return None
    headers = _fields(lines)
    if headers is None or any(name in headers for name in _PASSED_ON):
        return None
    path_qs = target.decode()
    _, _, query = path_qs.partition("?")
    url = URL.build(path="/events", query_string=query, encoded=True)
    return _Head(headers, url, path_qs)


def _publish_head(lines: list[bytes]) -> _Head | None:
    headers = _fields(lines)
    if headers is None or any(name in headers for name in _PUBLISH_PASSED_ON):
        return None
    length = headers.get("Content-Length", "")
    if not (length.isdigit() and length.isascii()) or len(length) > 18:
        return None
    if headers.get("Content-Type", "").lower() != JSON:
        return None  # NDJSON, parameters, anything else: aiohttp reads it
    return _Head(headers, _PUBLISH_URL, "/publish", int(length))


def _fields(lines: list[bytes]) -> CIMultiDictProxy[str] | None:
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            return None
        headers.add(name.decode(), value.strip(b" \t").decode())
    if len({name.lower() for name in headers}) != len(headers):
        return None  # any header twice: aiohttp decides what that means
    return CIMultiDictProxy(headers)


class _Date:
    """The Date header's value, made once a second."""

    second = 0
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True)
        return cls.value


def _answer_head(
    status: int, content_type: str, length: int, headers: dict[str, str], close: bool
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        f"Date: {_Date.now()}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _response_head(cors: dict[str, str]) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in cors.items())
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: keep-alive\r\n"
        "X-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\n"
        f"Date: {_Date.now()}\r\n"
        f"{extra}\r\n"
    ).encode()


class _Connection(asyncio.Protocol):
    """Reads requests; streams an admitted `GET /events` itself (it is the stream's Sink),
    answers JSON publishes, or hands the connection to aiohttp."""

    __slots__ = (
        "_body",
        "_drained",
        "_front",
        "_head",
        "_paused",
        "_pending",
        "_reading_paused",
        "_served",
        "_stream",
        "_timeout",
        "_transport",
        "task",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        # What arrived and is not yet answered: the next request's bytes.
        self._head = bytearray()
        # A publish whose body is on its way: its head, where the body starts and ends.
        self._body: tuple[_Head, int, int] | None = None
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
        self._arm(HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self._stream:
            return  # a stream's client has nothing more to say; what it sends is ignored
        if self._served and not self._head and self.task is None:
            self._arm(HEAD_TIMEOUT)  # a new request on a kept-alive connection
        self._head += data
        if self.task is None:
            self._read()
        elif len(self._head) > _MAX_WAITING:
            self._pause_reading()  # pipelined requests wait for the answer before them

    def _read(self) -> None:
        head = self._head
        if self._body is not None:  # only the body's length is checked until it is all here
            waiting, start, size = self._body
            if len(head) >= size:
                self._body = None
                self._begin(waiting, bytes(head[start:size]), size)
            return
        if not any(head.startswith(p) or p.startswith(head) for p in _PREFIXES):
            self._hand_over()
            return
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEAD:
                self._hand_over()
            return
        request = parse_head(bytes(head[:end])) if end + 4 <= MAX_HEAD else None
        if request is None:
            self._hand_over()
        elif request.length < 0:
            self._open(request, end + 4 == len(head))
        elif request.length > self._front.hub.settings.max_body_bytes:
            self._hand_over()  # aiohttp answers 413
        elif len(head) >= (size := end + 4 + request.length):
            self._begin(request, bytes(head[end + 4 : size]), size)
        else:
            self._body = (request, end + 4, size)

    def _begin(self, request: _Head, body: bytes, size: int) -> None:
        """Answer a publish read whole (its `size` bytes leave the buffer)."""
        self._stop_timer()
        del self._head[:size]
        task = asyncio.get_running_loop().create_task(self._answer(request, body))
        self.task = task
        self._front.publishing.add(task)
        task.add_done_callback(self._front.publishing.discard)

    def _open(self, request: _Head, alone: bool) -> None:
        if not alone or self._served:
            self._hand_over()  # bytes after the head, or a stream after publishes: aiohttp's
            return
        try:
            opening = admit(request, self._front.hub)
        except Exception:
            self._hand_over()  # aiohttp answers the refusal (or the failure)
            return
        self._stop_timer()
        self._stream = True
        origin = request.headers.get("Origin")
        task = self._serve(opening, redact(request.path_qs), origin)
        self.task = asyncio.get_running_loop().create_task(task)

    def _hand_over(self) -> None:
        self._stop_timer()
        self._front.connections.discard(self)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        protocol = self._front.aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._head = bytes(self._head), bytearray()
        if self._reading_paused:
            transport.resume_reading()
        if data:
            protocol.data_received(data)

    def _arm(self, timeout: float) -> None:
        self._front.arm(self, timeout)

    def expire(self) -> None:
        """No whole request in time: an idle keep-alive connection closes; a partial
        request goes to aiohttp, with its own limits."""
        if self._served and (self._paused or not self._head) and self._transport is not None:
            self._transport.close()  # idle, or its client stopped reading answers
        else:
            self._hand_over()

    def _stop_timer(self) -> None:
        self._front.disarm(self)

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
        self._stop_timer()
        self._front.connections.discard(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
        if self.task is not None and self._stream:
            self.task.cancel()  # as aiohttp does for a handler whose client left
        # A publish in flight completes: whether it was applied must not depend on the client.

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self._stream and self._served and self.task is None:
            self._next()

    # -- publishes ----------------------------------------------------------------------------

    async def _answer(self, request: _Head, body: bytes) -> None:
        hub = self._front.hub
        started = time.monotonic()
        close = "close" in request.headers.get("Connection", "").lower()
        headers: dict[str, str] = {}
        try:
            answer = await counted(hub, publish_request(hub, request, body))
            status, content_type = 200, JSON
        except HubError as exc:
            if exc.status >= 500:
                log.warning("POST /publish: %s", exc.detail)
            status, content_type, headers = exc.status, PROBLEM, exc.headers()
            answer = problem_body(exc.problem())
        except Exception:
            log.exception("a publish failed")
            error = HubError("the hub failed to handle the request (see its log)")
            status, content_type, answer, close = 500, PROBLEM, problem_body(error.problem()), True
        self.task = None
        self._served = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = close or self._front.closing
        transport.write(_answer_head(status, content_type, len(answer), headers, close) + answer)
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
            self._pause_reading()  # resume_writing comes back here
            self._arm(KEEP_ALIVE)
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._arm(HEAD_TIMEOUT if self._head else KEEP_ALIVE)
        if self._head:
            self._read()

    # -- the stream ---------------------------------------------------------------------------

    async def _serve(self, opening: Opening, path_qs: str, origin: str | None) -> None:
        front = self._front
        hub = front.hub
        self._timeout = send_timeout(hub.settings)
        self._pending = _response_head(hub.cors.headers_for(origin))
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
        if failed and self._head:
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
        self._head = bytearray()  # kept until now for a hand-over

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
