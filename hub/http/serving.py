"""The app behind the lean front on a listening socket: started, then drained and stopped.

aiohttp's public pieces only: an `AppRunner` runs the app's lifecycle and
makes its `Server` (the protocol factory for the connections the front hands
on); the listening socket is the event loop's, with the front as its factory.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.http.accesslog import AccessLogger
from hub.http.front import Front
from hub.http.state import HUB

# Connections the kernel holds until accepted (capped by net.core.somaxconn). 128 overflowed
# while thousands reconnected at once: each dropped SYN cost its client a 1 s retransmit.
BACKLOG = 4096


class HubServer:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        hub = app[HUB]
        self.runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=hub.settings.shutdown_timeout,
            # A handler whose client left is cancelled (a stream aiohttp serves ends with it).
            handler_cancellation=True,
            access_log_class=AccessLogger,
            # After an answer that left a body unread (a refusal), aiohttp reads on to keep
            # the connection: 2 s, not 10, before it closes instead.
            lingering_time=2.0,
        )
        self.front = Front(hub)
        # After the app's own drain (which ends every stream): the front's streams and
        # publishes finish before aiohttp's connections and the broker close.
        app.on_shutdown.append(self.front.on_shutdown)
        self._listener: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        self.front.attach(server)
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self.front, host, port, reuse_port=reuse_port or None, backlog=BACKLOG
        )

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """No new connections; idle ones close; streams drain; then the app's cleanup."""
        if self._listener is not None:
            self._listener.close()
        self.front.close_idle()
        await self.runner.cleanup()
