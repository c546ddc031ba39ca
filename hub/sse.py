"""Server-Sent Events framing, as bytes.

An event's `event:`/`data:` lines are encoded once per process and shared by
every stream; only the `id:` line is per stream. Fields are validated before
they get here (ids and event types never hold CR/LF/NUL), so a field can
never inject another SSE line (CWE-93).
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# A comment line alone: EventSource ignores it, and with no blank line after it no
# client that dispatches on every blank line (fetch-event-source) sees an empty event.
PING = b": ping\n"

# The opening event's type: a named event, so EventSource's `onmessage` never sees it.
OPEN = "hub.open"


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


# With JSON data, so no client hands the app an event with empty data.
_OPEN_BODY = event_body(OPEN, "{}")


def frame(event_id: str, body: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\n" + body


def opening(retry_ms: int, event_id: str | None) -> bytes:
    """The first block of a stream: the reconnect delay, the starting cursor when known,
    and the `hub.open` event that carries them.

    The cursor rides on an event with data because parsers that follow the standard
    only loosely (npm `eventsource`, `httpx-sse`) take an id only from an event they
    dispatch; a reconnect before the first event then still resumes exactly.
    """
    if event_id is None:
        return f"retry: {retry_ms}\n".encode() + _OPEN_BODY
    return f"retry: {retry_ms}\nid: {event_id}\n".encode() + _OPEN_BODY
