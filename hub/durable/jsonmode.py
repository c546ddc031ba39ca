"""`application/json` streams: messages kept whole, a JSON array flattened by one level
on append, and reads answered as one JSON array."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class InvalidJson(ValueError):
    pass


class EmptyArray(ValueError):
    pass


def _strict(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidJson("the body is not valid JSON") from None


def _refuse(name: str) -> Any:
    raise ValueError(name)


def stored(raw: bytes, creating: bool = False) -> bytes:
    """What an append keeps: each message compact and followed by a comma (an array's
    elements each a message). An empty array is nothing to create and an error to append."""
    value = _strict(raw)
    if isinstance(value, list):
        if not value:
            if creating:
                return b""
            raise EmptyArray("an empty array appends nothing")
        items = value
    else:
        items = [value]
    return b"".join(_compact(item) + b"," for item in items)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def as_array(messages: Sequence[bytes]) -> bytes:
    """Stored messages as one JSON array."""
    body = b"".join(messages).rstrip(b",")
    return b"[" + body + b"]"


def messages(stored_data: bytes) -> list[bytes]:
    """The compact messages one stored append holds."""
    values = json.loads(b"[" + stored_data.rstrip(b",") + b"]")
    return [_compact(value) for value in values]
