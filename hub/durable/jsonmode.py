"""`application/json` streams: messages kept whole, a JSON array flattened by one level
on append, and reads answered as one JSON array."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any


class InvalidJson(ValueError):
    pass


class EmptyArray(ValueError):
    pass


# Deeper JSON is refused: stored messages are encoded again (a fork inside an append).
MAX_DEPTH = 128


def _strict(raw: bytes) -> Any:
    """RFC 8259 JSON only: no NaN or Infinity (nor a number too large for a double), no
    lone surrogate, at most MAX_DEPTH levels deep."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse, parse_float=_finite)
        _compact(value)  # a lone surrogate cannot be stored as UTF-8
    except (UnicodeError, ValueError, RecursionError):
        raise InvalidJson("the body is not valid JSON") from None
    if _depth(value) > MAX_DEPTH:
        raise InvalidJson(f"the body nests deeper than {MAX_DEPTH} levels")
    return value


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("a number out of range")
    return number


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        deepest = max(deepest, depth)
        if isinstance(item, list):
            level.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            level.extend((child, depth + 1) for child in item.values())
    return deepest


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
