"""The lean front: the listening sockets' protocol factory, with aiohttp's server behind it.

Under aiohttp an idle stream costs its per-connection and per-request
machinery (~11 KiB and ~100 µs to accept), and every publish pays its request
objects. Here every connection starts as the front's own
(`hub.http.connection.Connection`): it streams plain `GET /events`, answers
plain JSON `POST /publish`, and hands anything else — another path or method,
a browser's request (CORS), a refusal of a stream — to aiohttp's protocol.

The front keeps what its connections share: one timer for every deadline (a
head not complete in time, whoever serves the connection; an idle keep-alive
connection), and on shutdown the streams and publishes still in flight.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.http.connection import Connection, Expiring
from hub.http.state import Hub

# How often the front looks for connections past their deadline (one timer for all).
SWEEP = 1.0


class Front:
    """The protocol factory the listening sockets use; aiohttp's server behind it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._server: web.Server | None = None
        # Connections still ours (not handed to aiohttp): idle ones are closed on shutdown.
        self.connections: set[Connection] = set()
        # Publishes being answered, until they finish (even when their client has left).
        self._publishing: set[asyncio.Task[None]] = set()
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connections waiting for a request, with their deadlines: one sweeping timer
        # serves them all (a timer per connection is a large part of an accept's cost).
        self._deadlines: dict[Expiring, float] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    def attach(self, server: web.Server) -> None:
        """aiohttp's server (`AppRunner.server`), for the connections handed to it."""
        self._server = server
        self._loop = asyncio.get_running_loop()

    def __call__(self) -> asyncio.Protocol:
        return Connection(self)

    def track(self, publish: asyncio.Task[None]) -> None:
        self._publishing.add(publish)
        publish.add_done_callback(self._publishing.discard)

    def aiohttp_protocol(self) -> asyncio.Protocol:
        assert self._server is not None, "attach() comes before the first connection"
        return self._server()

    def arm(self, connection: Expiring, timeout: float) -> None:
        loop = self._loop
        assert loop is not None
        self._deadlines[connection] = loop.time() + timeout
        if self._sweeping is None:
            self._sweeping = loop.call_later(SWEEP, self._sweep)

    def disarm(self, connection: Expiring) -> None:
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
        tasks = {c.task for c in self.connections if c.task is not None} | self._publishing
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.hub.settings.shutdown_timeout)
            for connection in [c for c in self.connections if c.task in late]:
                connection.abort()  # connection_lost cancels a stream's task
            for task in late:
                task.cancel()  # as aiohttp does with handlers at the deadline
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
