"""Opaque SSE cursors: the position on every channel of one subscription.

A cursor is `tag.epoch.offset.stamp` per channel, joined by `_`; all parts are
base36 so the id is URL-safe and free of CR/LF/NUL. `tag` is a short hash of
the channel name, so a cursor stays readable when a client changes its topics.
`epoch` tells a wiped and recreated channel from the old one; `offset` counts
the channel's entries contiguously from 1, which makes gaps detectable;
`stamp` is the stamp of the entry at `offset`, which tells that entry from
another written at the same offset after a failover lost it. The stamp is
left out when not known (0), and cursors without one are read as such.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Twelve base36 digits stay below 2**63: every value fits a Redis stream id.
# Stamps are below 36**6 (publish.lua takes them modulo that).
_PART_RE = re.compile(r"([0-9a-z]{1,8})\.([0-9a-z]{1,12})\.([0-9a-z]{1,12})(?:\.([0-9a-z]{1,6}))?")
MAX_CURSOR_LENGTH = 4096


class Position(NamedTuple):
    """Where a subscriber stands on one channel: the last offset seen in an epoch, and
    the stamp of the entry at that offset.

    Epoch 0 means the channel did not exist when the position was taken; stamp 0
    means the entry's stamp is not known, and then it is not checked.
    """

    epoch: int
    offset: int
    stamp: int = 0


NOWHERE = Position(0, 0)


class CursorError(ValueError):
    """The cursor cannot be read."""


@functools.lru_cache(maxsize=4096)  # every stream of a channel encodes the same offsets
def base36(number: int) -> str:
    if number == 0:
        return "0"
    digits = []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def channel_tag(channel: str) -> str:
    digest = hashlib.blake2b(channel.encode(), digest_size=5).digest()
    return base36(int.from_bytes(digest, "big"))


def encode_part(tag: str, position: Position) -> str:
    epoch, offset, stamp = position
    if stamp:
        return f"{tag}.{base36(epoch)}.{base36(offset)}.{base36(stamp)}"
    return f"{tag}.{base36(epoch)}.{base36(offset)}"


def encode(parts: Iterable[str]) -> str:
    return "_".join(parts)


def decode(cursor: str) -> dict[str, Position]:
    """Map tag -> position; raises CursorError for anything not made by `encode`."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError("cursor is empty or too long")
    positions: dict[str, Position] = {}
    for part in cursor.split("_"):
        match = _PART_RE.fullmatch(part)
        if match is None:
            raise CursorError(f"unreadable cursor part {part!r}")
        tag, epoch, offset, stamp = match.groups()
        positions[tag] = Position(int(epoch, 36), int(offset, 36), int(stamp or "0", 36))
    return positions
