"""The lean front: `GET /events` streams served by a small protocol of our own.

Under aiohttp an idle stream costs its per-connection and per-request
machinery (~11 KiB and ~100 µs to accept). Here every connection starts as a
`_Connection` that reads the request head. A plain `GET /events` that
admission accepts is streamed by the connection itself; anything else —
another path or method, a head it does not fully understand, a refusal, a
failure before the response starts — is handed, bytes and all, to aiohttp's
own protocol, which answers as it always does (same admission, same
problem+json errors). The lean path never writes an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web
from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from hub.accesslog import log_access, redact
from hub.events import Opening, admit
from hub.state import HUB, Hub
from hub.stream import ClientGone, chunk, open_stream, room_now, send_timeout, timed_write

log = logging.getLogger(__name__)
access_log = logging.getLogger("aiohttp.access")

_PREFIX = b"GET /events"
# Heads larger than this, or not complete in time, go to aiohttp and its limits.
MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e]*")
_TARGET = re.compile(rb"/events(\?[\x21-\x22\x24-\x7e]*)?")
# Requests with these are passed on: a body, or a protocol change.
_PASSED_ON = ("Content-Length", "Transfer-Encoding", "Upgrade", "Expect")
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
        self.streams: set[_Connection] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)  # the rest of aiohttp's Server, unchanged

    def aiohttp_protocol(self) -> asyncio.Protocol:
        return self._server()

    def pre_shutdown(self) -> None:
        self._server.pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Waits for the streams the drain ended to write their last frames, then for aiohttp's."""
        tasks = [c.task for c in self.streams if c.task is not None]
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for connection in [c for c in self.streams if c.task in late]:
                connection.abort()  # connection_lost cancels its task
        left = None if deadline is None else max(0.0, deadline - loop.time())
        await self._server.shutdown(left)


class _Head:
    """A parsed `GET /events` head: what admission reads (see `RequestView`)."""

    __slots__ = ("headers", "path_qs", "query", "query_string")

    def __init__(self, headers: CIMultiDictProxy[str], url: URL, path_qs: str) -> None:
        self.headers = headers
        self.query: MultiDictProxy[str] = url.query
        self.query_string = url.query_string
        self.path_qs = path_qs

    @property
    def cookies(self) -> dict[str, str]:
        """As aiohttp's `request.cookies` reads them (its own parser)."""
        return {
            name: morsel.value
            for name, morsel in parse_cookie_header(self.headers.get("Cookie", ""))
        }


def parse_head(head: bytes) -> _Head | None:
    """The head of a plain HTTP/1.1 `GET /events`; None for anything else."""
    request_line, *lines = head.split(b"\r\n")
    if len(lines) > _MAX_FIELDS or any(len(line) > _MAX_FIELD for line in lines):
        return None
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    target = parts[1]
    if not _TARGET.fullmatch(target):
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            return None
        headers.add(name.decode(), value.strip(b" \t").decode())
    if any(name in headers for name in _PASSED_ON):
        return None
    if len(set(headers)) != len(headers):
        return None  # any header twice: aiohttp decides what that means
    path_qs = target.decode()
    _, _, query = path_qs.partition("?")
    url = URL.build(path="/events", query_string=query, encoded=True)
    return _Head(CIMultiDictProxy(headers), url, path_qs)


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
    """Reads a request head; streams an admitted `GET /events` itself (it is the stream's
    Sink), or hands the connection to aiohttp."""

    __slots__ = (
        "_drained",
        "_front",
        "_head",
        "_head_timer",
        "_paused",
        "_pending",
        "_timeout",
        "_transport",
        "task",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._pending = b""  # the response head, sent with the first frame
        self._timeout = 0.0

    # -- reading the head ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(HEAD_TIMEOUT, self._hand_over)

    def data_received(self, data: bytes) -> None:
        if self.task is not None:
            return  # a stream's client has nothing more to say; what it sends is ignored
        head = self._head + data
        if not (head.startswith(_PREFIX) or _PREFIX.startswith(head)):
            self._hand_over(head)
            return
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEAD:
                self._hand_over(head)
            else:
                self._head = head
            return
        request = parse_head(head[:end]) if end + 4 == len(head) <= MAX_HEAD else None
        if request is None:
            self._hand_over(head)
            return
        try:
            opening = admit(request, self._front.hub)
        except Exception:
            self._hand_over(head)  # aiohttp answers the refusal (or the failure)
            return
        self._head = head
        self._stop_head_timer()
        origin = request.headers.get("Origin")
        task = self._serve(opening, redact(request.path_qs), origin)
        self.task = asyncio.get_running_loop().create_task(task)

    def _hand_over(self, head: bytes | None = None) -> None:
        self._stop_head_timer()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        protocol = self._front.aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = self._head if head is None else head
        self._head = b""
        if data:
            protocol.data_received(data)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())
        if self.task is not None:
            self.task.cancel()  # as aiohttp does for a handler whose client left

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- the stream ---------------------------------------------------------------------------

    async def _serve(self, opening: Opening, path_qs: str, origin: str | None) -> None:
        front = self._front
        hub = front.hub
        self._timeout = send_timeout(hub.settings)
        self._pending = _response_head(hub.cors.headers_for(origin))
        started = time.monotonic()
        front.streams.add(self)
        failed = False
        try:
            await open_stream(hub, opening, self)
        except Exception:
            # Raised before the response started (open_stream handles the rest): aiohttp
            # answers while the head is still here, else the connection is dropped.
            failed = True
        finally:
            opening.release(hub)
            front.streams.discard(self)
            if not failed and not self._pending:
                self._log_access(path_qs, time.monotonic() - started)
        if failed and self._head:
            self.task = None
            self._pending = b""
            self._hand_over()
        elif failed:
            self.abort()

    def _log_access(self, path_qs: str, seconds: float) -> None:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        host = peer[0] if isinstance(peer, tuple) else None
        log_access(access_log, host, "GET", path_qs, 200, seconds)

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
        self._head = b""  # kept until now for a hand-over

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
        transport.write(self._chunk(data))
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
