"""A cheap load generator: raw-socket SSE streams (no HTTP client on the hot path) and
pipelined HTTP publishes over plain asyncio streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class Stream(asyncio.Protocol):
    """One SSE stream as a bare protocol (no reader task, no buffering layers): calls
    `on_data(payload, received_at)` for every event's data line as the bytes arrive."""

    def __init__(self, on_data: Callable[[bytes, float], None]) -> None:
        self.on_data = on_data
        self.last_id = b""
        self.events = 0
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._opened: asyncio.Future[None] | None = None

    async def open(self, url: str, token: str, query: str = "", last_id: str = "") -> None:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        # uvloop may call connection_made after this returns: use the transport it gives.
        self._transport, _ = await loop.create_connection(
            lambda: self, parts.hostname or "127.0.0.1", parts.port or 80
        )
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        self._transport.write(
            f"GET /events?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"{extra}\r\n".encode()
        )
        await self._opened  # the opening block (retry:, the cursor): the stream is subscribed

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        opened = self._opened
        if opened is not None and not opened.done():
            head, found, rest = self._buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                opened.set_exception(RuntimeError(head.split(b"\r\n", 1)[0].decode()))
                return
            if b"retry:" not in rest:
                return
            self._buffer = rest.split(b"\n\n", 1)[1] if b"\n\n" in rest else b""
            opened.set_result(None)
        *frames, self._buffer = self._buffer.split(b"\n\n")
        for frame in frames:
            # Chunked framing interleaves size lines; only id:/data: lines matter here.
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    self.events += 1
                    self.on_data(line[6:], now)
                elif line.startswith(b"id: "):
                    self.last_id = line[4:].strip()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(ConnectionError("closed before the stream opened"))

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


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
