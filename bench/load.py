"""A cheap load generator: raw-socket SSE streams (no HTTP client on the hot path) and
pipelined HTTP publishes over plain asyncio streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class Stream:
    """One SSE stream; calls `on_data(payload, received_at)` for every event's data line."""

    def __init__(self, on_data: Callable[[bytes, float], None]) -> None:
        self.on_data = on_data
        self.last_id = b""
        self.events = 0
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, url: str, token: str, query: str = "", last_id: str = "") -> None:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        writer.write(
            f"GET /events?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        # The opening block (retry:, the cursor): from here on the stream is subscribed.
        while b"retry:" not in await reader.readuntil(b"\n\n"):
            pass
        self._writer = writer
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                # Chunked framing interleaves size lines; only id:/data: lines matter here.
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        self.events += 1
                        self.on_data(line[6:], now)
                    elif line.startswith(b"id: "):
                        self.last_id = line[4:].strip()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()


class Publisher:
    """Keep-alive HTTP/1.1 publishes on one connection."""

    def __init__(self, url: str, token: str) -> None:
        self._url = urlsplit(url)
        self._token = token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._url.hostname, self._url.port
        )

    async def post(self, body: object, content_type: str = "application/json") -> bytes:
        if self._writer is None:
            await self._connect()
        assert self._reader is not None
        assert self._writer is not None
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self._writer.write(
            b"POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + self._token.encode()
            + b"\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: "
            + str(len(data)).encode()
            + b"\r\n\r\n"
            + data
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        answer = await self._reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"publish failed: {head.split(b' ', 2)[1].decode()} {answer!r}")
        return answer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
