"""Server-Sent Events framing, as bytes.

An event's `event:`/`data:` lines are encoded once per process and shared by
every stream; only the `id:` line is per stream. Fields are validated before
they get here (ids and event types never hold CR/LF/NUL), so a field can
never inject another SSE line (CWE-93).
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

PING = b": ping\n\n"


def event_body(event: str, data: str) -> bytes:
    """`event:` and `data:` lines plus the blank line that ends the frame.

    Data is split on CRLF, CR and LF so that EventSource's `event.data` is the
    published text with every line end read as LF.
    """
    if "\n" not in data and "\r" not in data:  # most events: one data line
        return f"event: {event}\ndata: {data}\n\n".encode()
    lines = [f"event: {event}\n"]
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode()


def frame(event_id: str, body: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\n" + body


def opening(retry_ms: int, event_id: str | None) -> bytes:
    """The first block of a stream: the reconnect delay and, when known, the starting cursor.

    A block with an `id:` and no `data:` dispatches no event but sets the
    EventSource's last event id, so a reconnect before the first event still
    resumes exactly.
    """
    if event_id is None:
        return f"retry: {retry_ms}\n\n".encode()
    return f"retry: {retry_ms}\nid: {event_id}\n\n".encode()
