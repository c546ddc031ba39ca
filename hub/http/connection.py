"""One connection of the lean front: requests read, streams and JSON publishes served, the
rest handed to aiohttp.

Every connection starts as a `Connection` that reads request heads with llhttp
(`hub.http.head`). A plain `GET /events` on a fresh connection that admission
accepts is streamed here (through `hub.http.sink.StreamSink`); a plain
`POST /publish` with an `application/json` body of a known length is answered
here (`hub.http.publish.answer`), kept alive, pipelined requests answered in
order. A head llhttp refuses is answered here too (400, 408, 501, 505), and the
connection closes. Anything else is handed, bytes and all, to aiohttp's own
protocol behind a relay that watches request boundaries with llhttp, so a head
that stalls is cut off at the same deadline whoever serves the connection. (A
body aiohttp reads has no such deadline: an NDJSON publish is a long-running
producer's stream by design.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Protocol, cast

import httptools

from hub.delivery.admission import Opening, admit
from hub.delivery.stream import send_timeout
from hub.errors import HeadTimeout, HubError
from hub.http.accesslog import log_access
from hub.http.head import Head, RequestReader, answer_head
from hub.http.problem import CONTENT_TYPE as PROBLEM
from hub.http.problem import error_answer
from hub.http.publish import answer
from hub.http.sink import Flow, StreamSink
from hub.http.state import Hub
from hub.logs import redact

log = logging.getLogger(__name__)
access_log = logging.getLogger("aiohttp.access")

# A request's head (and a JSON publish's body) must arrive within this many seconds.
HEAD_TIMEOUT = 10.0
# An idle keep-alive connection is closed after this long (as aiohttp's default).
KEEP_ALIVE = 3630.0
# Pipelined bytes read while a publish is answered; beyond this the kernel holds the rest.
_MAX_WAITING = 65536


class Expiring(Protocol):
    """What the front's deadlines hold: a connection, or one handed to aiohttp."""

    def expire(self) -> None: ...


class Owner(Protocol):
    """What a connection needs of the front that made it (`hub.http.front.Front`)."""

    @property
    def hub(self) -> Hub: ...

    @property
    def closing(self) -> bool: ...

    @property
    def connections(self) -> set[Connection]: ...

    def track(self, publish: asyncio.Task[None]) -> None:
        """Keeps a publish being answered until it is done (shutdown waits for it)."""

    def arm(self, connection: Expiring, timeout: float) -> None: ...

    def disarm(self, connection: Expiring) -> None: ...

    def aiohttp_protocol(self) -> asyncio.Protocol: ...


class _Relay(asyncio.Protocol):
    """The transport's protocol once the connection is handed to aiohttp: everything goes to
    aiohttp's protocol, while llhttp follows the requests so that a head that starts ends
    within the head timeout. llhttp refusing the bytes ends the watch (aiohttp, on the same
    parser, refuses them too and closes)."""

    __slots__ = ("_front", "_parser", "_protocol", "_transport")

    def __init__(self, front: Owner, transport: asyncio.Transport) -> None:
        self._front = front
        self._transport = transport
        self._protocol = front.aiohttp_protocol()
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        transport.set_protocol(self)
        self._protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is not None and not self._watch(self._parser, data):
            self._parser = None
        self._protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self._protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.disarm(self)
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()

    def expire(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()  # a head stalled

    def on_message_begin(self) -> None:
        self._front.arm(self, HEAD_TIMEOUT)

    def on_headers_complete(self) -> None:
        self._front.disarm(self)

    def _watch(self, parser: httptools.HttpRequestParser, data: bytes) -> bool:
        while True:
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # aiohttp upgrades nothing: it reads what follows as requests, so do we.
                data = data[exc.args[0] :]
                parser = self._parser = httptools.HttpRequestParser(self)
            except httptools.HttpParserError:
                return False
            else:
                return True


class Connection(asyncio.Protocol):
    """Reads requests; streams an admitted `GET /events`, answers JSON publishes (kept
    alive, pipelined ones in order), or hands the connection to aiohttp."""

    __slots__ = (
        "_buffer",
        "_flow",
        "_front",
        "_ignoring",
        "_requests",
        "_served",
        "_sink",
        "_transport",
        "task",
    )

    def __init__(self, front: Owner) -> None:
        self._front = front
        # Both set by connection_made, before any other call.
        self._transport: asyncio.Transport
        self._flow: Flow
        # What arrived and is not yet answered: the next request's bytes, and their reader.
        self._buffer = bytearray()
        self._requests = RequestReader()
        self.task: asyncio.Task[None] | None = None  # the stream, or the publish answered
        self._sink: StreamSink | None = None  # the stream being served
        self._ignoring = False  # a stream or a refusal: what the client sends is ignored
        self._served = False  # a publish was answered: the connection is kept alive

    # -- asyncio's callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._flow = Flow(self._transport)
        self._front.connections.add(self)
        self._front.arm(self, HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self._ignoring:
            return  # a stream's client has nothing more to say; what it sends is ignored
        if self._served and not self._buffer and self.task is None:
            self._front.arm(self, HEAD_TIMEOUT)  # a new request on a kept-alive connection
        self._buffer += data
        if self.task is None:
            self._read()
        elif len(self._buffer) > _MAX_WAITING:
            self._flow.pause_reading()  # pipelined requests wait for the answer before them

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.disarm(self)
        self._front.connections.discard(self)
        self._flow.lost()
        if self.task is not None and self._ignoring:
            self.task.cancel()  # as aiohttp does for a handler whose client left
        # A publish in flight completes: whether it was applied must not depend on the client.

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()
        if not self._ignoring and self._served and self.task is None:
            self._next()

    # -- reading requests ---------------------------------------------------------------------

    def _read(self) -> None:
        try:
            request = self._requests.read(self._buffer, self._front.hub.settings.max_body_bytes)
        except HubError as exc:
            self._refuse(exc)
            return
        if request is None:
            return
        if request.by == "aiohttp":
            self._hand_over()
        elif request.by == "body":
            self._front.arm(self, HEAD_TIMEOUT)  # the body has as long as the head had
        elif request.by == "stream":
            assert request.head is not None
            self._open(request.head, request.size == len(self._buffer))
        else:  # a publish read whole: its bytes leave the buffer
            assert request.head is not None
            self._front.disarm(self)
            del self._buffer[: request.size]
            publish = self._publish(request.head, request.body)
            self.task = asyncio.get_running_loop().create_task(publish)
            self._front.track(self.task)

    def _refuse(self, error: HubError) -> None:
        """Answers a request the front will not serve nor pass on, and closes."""
        self._front.disarm(self)
        self._ignoring = True  # nothing more is read
        if self._transport.is_closing():
            return
        status, headers, body = error_answer(error, "a request")
        self._transport.write(answer_head(status, PROBLEM, len(body), headers, True) + body)
        self._transport.close()
        log.debug("refused a request: %s", error.detail)

    def _hand_over(self) -> None:
        """aiohttp serves the connection from the request being read on; this connection
        is done with it."""
        self._front.disarm(self)
        self._front.connections.discard(self)
        if self._transport.is_closing():
            return
        relay = _Relay(self._front, self._transport)
        data, self._buffer = bytes(self._buffer), bytearray()
        self._flow.resume_reading()
        if data:
            relay.data_received(data)

    # -- publishes ----------------------------------------------------------------------------

    async def _publish(self, request: Head, body: bytes) -> None:
        front, started = self._front, time.monotonic()
        reply = await answer(front.hub, request, body, lambda: front.closing)
        self.task = None
        self._served = True
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(reply.data)
        _log_access(transport, "POST", "/publish", reply.status, time.monotonic() - started)
        if reply.close:
            transport.close()
        else:
            self._next()

    def _next(self) -> None:
        """After an answer: the next request, once the client reads answers again."""
        if self._transport.is_closing():
            return
        if self._flow.writing_paused:
            self._flow.pause_reading()  # resume_writing comes back here, or the send timeout
            self._front.arm(self, send_timeout(self._front.hub.settings))
            return
        self._flow.resume_reading()
        self._front.arm(self, HEAD_TIMEOUT if self._buffer else KEEP_ALIVE)
        if self._buffer:
            self._read()

    # -- streams ------------------------------------------------------------------------------

    def _open(self, request: Head, alone: bool) -> None:
        if not alone or self._served:
            self._hand_over()  # bytes after the head, or a stream after publishes: aiohttp's
            return
        hub = self._front.hub
        try:
            opening = admit(request, hub)
        except Exception:
            self._hand_over()  # aiohttp answers the refusal (or the failure)
            return
        self._front.disarm(self)
        self._ignoring = True
        # The request is kept until the response starts, to hand it to aiohttp on a failure.
        started = self._buffer.clear
        origin = request.headers.get("Origin")
        self._sink = StreamSink(self._transport, self._flow, hub, origin, started)
        self.task = asyncio.get_running_loop().create_task(
            self._serve(opening, self._sink, redact(request.path_qs))
        )

    async def _serve(self, opening: Opening, sink: StreamSink, path_qs: str) -> None:
        logged = partial(_log_access, self._transport, "GET", path_qs, 200)
        if await sink.serve(self._front.hub, opening, logged):
            return
        if self._buffer:  # failed before its response started: aiohttp answers
            self._hand_over()
        else:
            self.abort()

    # -- the front's calls: deadlines and shutdown --------------------------------------------

    def expire(self) -> None:
        """No whole request in time: an idle keep-alive connection closes; a partial
        request is answered 408."""
        transport = self._transport
        if transport.is_closing():
            return
        if self._served and self._flow.writing_paused:
            transport.abort()  # its client stopped reading answers: nothing would flush
        elif self._served and not self._buffer:
            transport.close()  # idle
        else:
            self._refuse(HeadTimeout("the request did not arrive in time"))

    @property
    def streaming(self) -> bool:
        return self._sink is not None and self.task is not None and not self.task.done()

    def close_if_idle(self) -> None:
        """On shutdown: a connection with nothing in flight closes now."""
        if self.task is None:
            self._transport.close()

    def abort(self) -> None:
        self._transport.abort()


def _log_access(
    transport: asyncio.Transport, method: str, path_qs: str, status: int, seconds: float
) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    peer = transport.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) else None
    log_access(access_log, host, method, path_qs, status, seconds)
