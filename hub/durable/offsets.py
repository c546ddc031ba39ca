"""Durable Streams offsets and cursors.

An offset is `<read-seq>_<position>`, both zero-padded to 16 digits, so that
offsets compare as strings in stream order (the protocol's rule). The position
grows by each stored message's length plus a fixed frame overhead, as the
reference server counts it; offsets are only ever read back, never computed by
clients.
"""

from __future__ import annotations

import random
import re
import time

ZERO = "0000000000000000_0000000000000000"
START = "-1"
NOW = "now"
FRAME_OVERHEAD = 5
_OFFSET = re.compile(r"([0-9]{1,16})_([0-9]{1,16})")
# Live cursors: 20-second intervals counted from 2024-10-09T00:00:00Z (the protocol's).
_CURSOR_EPOCH = 1728432000.0
_CURSOR_INTERVAL = 20
_JITTER = (1, 3600)


def canonical(offset: str) -> str | None:
    """An offset as this hub writes it (`0_10` is `0000000000000000_0000000000000010`),
    so that both stores compare it alike; None if it is not an offset."""
    match = _OFFSET.fullmatch(offset)
    if match is None:
        return None
    return f"{int(match[1]):016d}_{int(match[2]):016d}"


def requested(offset: str) -> str | None:
    """A read's offset: `-1`, `now`, or an offset made canonical; None if it is none."""
    return offset if offset in (START, NOW) else canonical(offset)


def position(offset: str) -> int:
    """Where in the stream an offset is (its second part)."""
    return int(offset.split("_", 1)[1])


def offset_at(pos: int) -> str:
    return f"{0:016d}_{pos:016d}"


def advance(offset: str, size: int) -> str:
    """The offset after a message of `size` bytes stored at `offset`."""
    read_seq, position = (int(part) for part in offset.split("_"))
    return f"{read_seq:016d}_{position + FRAME_OVERHEAD + size:016d}"


def response_cursor(client: str | None) -> str:
    """The live cursor to answer with: the current interval, or past the client's when it
    is not behind (so that a CDN never serves a client its own cursor back)."""
    current = int((time.time() - _CURSOR_EPOCH) // _CURSOR_INTERVAL)
    try:
        theirs = int(client) if client else -1
    except ValueError:
        theirs = -1
    if theirs < current:
        return str(current)
    jitter = random.randint(*_JITTER)  # spreads caches: not a secret
    return str(theirs + max(1, -(-jitter // _CURSOR_INTERVAL)))
