"""A TCP proxy in front of Redis that can lose the reply to a publish script, as a
connection dying between Redis applying a command and the hub reading the answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class ReplyLosingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_next_script_reply = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        doomed = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                if self.lose_next_script_reply and b"EVAL" in data:
                    self.lose_next_script_reply = False
                    doomed.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if doomed.is_set():
                    writer.transport.abort()  # Redis applied it; the answer never arrives
                    up_writer.close()
                    return
                writer.write(data)
                await writer.drain()
            writer.close()

        self._spawn(to_redis())
        self._spawn(to_client())
