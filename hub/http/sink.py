"""A connection's flow control, and the event stream the lean front serves through it.

`Flow` follows the transport's pause_writing/resume_writing and pauses reading
(pipelined requests wait while their answers back up). `StreamSink` serves an
admitted stream as the `Sink` of `hub.delivery.stream.open_stream` on the
front's own connection: chunked frames straight to the transport, the response
head sent with the first one, a write held while the transport is paused for at
most the send timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from hub.delivery.admission import Opening
from hub.delivery.engine import Engine
from hub.delivery.stream import (
    ClientGone,
    chunk,
    open_stream,
    room_now,
    send_timeout,
    timed_write,
)
from hub.http.head import stream_head
from hub.http.state import Hub


class Flow:
    """Whether the transport takes writes, and whether we stopped reading from it."""

    __slots__ = ("_drained", "_transport", "reading_paused", "writing_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writing_paused = False
        self.reading_paused = False
        self._drained: asyncio.Future[None] | None = None

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def lost(self) -> None:
        """The connection is gone: a write waiting for the transport ends with ClientGone."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError())

    async def drain(self) -> None:
        """Until the transport takes writes again; ClientGone when the connection is lost."""
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await self._drained
        except ConnectionError:
            raise ClientGone from None
        finally:
            self._drained = None


class StreamSink:
    """An event stream on the front's connection. `started` is called when the response
    starts (until then the connection keeps the request, to hand it to aiohttp)."""

    __slots__ = ("_flow", "_pending", "_started", "_timeout", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        flow: Flow,
        hub: Hub,
        origin: str | None,
        started: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._flow = flow
        # The response head, sent with the first frame: one write.
        self._pending = stream_head(hub.cors.headers_for(origin))
        self._timeout = send_timeout(hub.settings)
        self._started = started

    async def serve(self, hub: Engine, opening: Opening, logged: Callable[[float], None]) -> bool:
        """Runs the admitted stream until it ends, then `logged` with its duration if its
        response started. False when it failed before that (open_stream handles the rest):
        the request may still be answered by aiohttp."""
        started = time.monotonic()
        failed = False
        try:
            await open_stream(hub, opening, self)
        except Exception:
            failed = True
        finally:
            opening.release(hub)
            if not failed and not self._pending:
                logged(time.monotonic() - started)
        return not failed

    async def start(self) -> None:
        transport = self._transport
        if transport.is_closing():
            raise ClientGone
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                millis = int(self._timeout * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, millis)
        self._started()

    async def write(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            raise ClientGone
        transport.write(self._chunk(data))
        if self._flow.writing_paused:
            await timed_write(self._flow.drain(), self._timeout, self.abort)

    def _chunk(self, data: bytes) -> bytes:
        framed = chunk(data)
        if self._pending:
            framed, self._pending = self._pending + framed, b""
        return framed

    def direct(self, data: bytes) -> bool:
        transport = self._transport
        if not room_now(transport):
            return False
        if self._pending:
            transport.write(self._chunk(data))
        else:  # every live event of a caught-up stream: `chunk` inlined
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    def abort(self) -> None:
        self._transport.abort()

    async def finish(self) -> None:
        """The last chunk; the connection then closes (once what is buffered is sent)."""
        transport = self._transport
        if not transport.is_closing():
            transport.write(self._pending + b"0\r\n\r\n")
            transport.close()
