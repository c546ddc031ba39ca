"""A small SSE reader for tests, parsing as a browser's EventSource does."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientPayloadError, ClientResponse

_LINE = re.compile(rb"\r\n|\r|\n")
OPEN = "hub.open"


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: str


@dataclass
class SSEStream:
    response: ClientResponse
    last_id: str = ""  # as EventSource's: taken from the id buffer when a block completes
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    aborted: bool = False  # the server cut the connection instead of ending the stream
    opened: int = 0  # `hub.open` events seen (the opening block), not returned by `next`
    _id_buffer: str = ""
    _buffer: bytes = b""
    _eof: bool = False

    async def _line(self, timeout: float) -> str | None:
        while True:
            match = _LINE.search(self._buffer)
            # A lone CR at the end may be the first half of CRLF: wait for more.
            if match and not (match.group() == b"\r" and match.end() == len(self._buffer)):
                line, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
                return line.decode()
            if self._eof:
                return None
            try:
                # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that comes as
                # the read completes, and the reader then reads on (a stuck chaos run).
                async with asyncio.timeout(timeout):
                    chunk = await self.response.content.readany()
            except ClientPayloadError:
                self.aborted, chunk = True, b""
            if not chunk:
                self._eof = True
                self.response.close()  # the stream is over: give the connection back
                # A last line without its end was cut off (a lone CR is a whole end).
                self._buffer = self._buffer + b"\n" if self._buffer.endswith(b"\r") else b""
            self._buffer += chunk

    async def next(self, timeout: float = 10.0) -> Event:
        """The next dispatched event; EOFError when the stream ends first."""
        data: list[str] = []
        event = ""
        while True:
            line = await self._line(timeout)
            if line is None:
                raise EOFError("stream ended")
            if line == "":
                # An event cut off before its blank line sets nothing: a resume repeats it.
                self.last_id = self._id_buffer
                if data and event == OPEN:
                    self.opened += 1  # as an app that listens for messages never sees it
                elif data:
                    return Event(self.last_id, event or "message", "\n".join(data))
                event = ""
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                self._id_buffer = value
            elif name == "retry" and value.isdigit():
                self.retry = int(value)

    async def take(self, count: int, timeout: float = 10.0) -> list[Event]:
        return [await self.next(timeout) for _ in range(count)]

    async def wait_open(self, timeout: float = 10.0) -> None:
        """Until the opening block (`retry:`, maybe `id:`, the `hub.open` event) has arrived:
        from then on the stream is subscribed."""
        await self._opening(timeout, whole_block=True)

    async def wait_retry(self, timeout: float = 10.0) -> None:
        """Until the `retry:` line a Mercure stream opens with (it has no opening event):
        from then on the stream is subscribed."""
        await self._opening(timeout, whole_block=False)

    async def _opening(self, timeout: float, whole_block: bool) -> None:
        while True:
            line = await self._line(timeout)
            if line is None:
                raise EOFError("stream ended before retry:")
            name, _, value = line.partition(":")
            if name == "retry":
                self.retry = int(value)
                if not whole_block:
                    return
            elif name == "id":
                self._id_buffer = value.removeprefix(" ")
            elif line == "" and self.retry is not None:
                self.last_id = self._id_buffer
                self.opened += 1
                return

    async def wait_comment(self, text: str, timeout: float = 10.0) -> None:
        """Until a comment line `: <text>` arrives (events before it are dropped)."""
        while True:
            line = await self._line(timeout)
            if line is None:
                raise EOFError("stream ended before the comment")
            if line.startswith(":") and line[1:].strip() == text:
                self.comments.append(text)
                return

    async def rest(self, timeout: float = 10.0) -> list[Event]:
        """Every event until the stream ends."""
        events = []
        while True:
            try:
                events.append(await self.next(timeout))
            except EOFError:
                return events

    def close(self) -> None:
        self.response.close()


def datas(events: list[Event]) -> list[str]:
    return [e.data for e in events]


def told(event: Event) -> tuple[str, Any]:
    """An event's name and its data read as JSON (`hub.reset` carries JSON)."""
    return (event.event, json.loads(event.data))


def lost_reset(*channels: str) -> tuple[str, dict[str, Any]]:
    """What `told` makes of `hub.reset` with reason `history_lost` for `channels`."""
    return ("hub.reset", {"reason": "history_lost", "channels": list(channels)})
