"""A publish request's message: validated at the edge, so nothing malformed reaches a broker."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from hub.channels import EVENT_RE, topic_channel, user_channel, valid_name
from hub.errors import BadRequest, PayloadTooLarge

DEFAULT_EVENT = "message"
RESERVED_EVENT_PREFIX = "hub."
_FIELDS = frozenset({"users", "topics", "event", "data"})


@dataclass(slots=True)  # never changed; not frozen: that costs ~0.5 µs more per message
class Message:
    channels: tuple[str, ...]
    event: str
    # What the stream's `data:` lines carry: a published string as is, other JSON compact.
    data: str


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


# orjson reads integers beyond 64 bits as floats (losing digits): those go the slow way.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def loads(raw: bytes) -> Any:
    """Strict JSON: NaN and Infinity are refused, as RFC 8259 says.

    orjson is the fast path. What it refuses (lone surrogates, numbers out of
    range, errors) and integers beyond 64 bits go through the standard library,
    which reads big integers exactly and words its errors for people.
    """
    if _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept as is."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _names(obj: dict[str, Any], key: str, where: str) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise BadRequest(f"{where}{key!r} must be a list of strings")
    for name in value:
        if not valid_name(name):
            raise BadRequest(
                f"{where}{key!r} holds {name!r}, not matching [A-Za-z0-9_.@:-]{{1,128}}"
            )
    return list(dict.fromkeys(value))


def parse_message(
    obj: Any, *, max_payload_bytes: int, max_targets: int, where: str = ""
) -> Message:
    if not isinstance(obj, dict):
        raise BadRequest(f"{where}a message must be a JSON object")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise BadRequest(f"{where}unknown field(s) {', '.join(map(repr, unknown))}")
    channels = [user_channel(u) for u in _names(obj, "users", where)]
    channels += [topic_channel(t) for t in _names(obj, "topics", where)]
    if not channels:
        raise BadRequest(f"{where}at least one of 'users', 'topics' must be non-empty")
    if len(channels) > max_targets:
        raise BadRequest(f"{where}too many targets ({len(channels)} > {max_targets})")
    event = obj.get("event", DEFAULT_EVENT)
    if not isinstance(event, str) or EVENT_RE.fullmatch(event) is None:
        raise BadRequest(f"{where}'event' must match [A-Za-z0-9_.:-]{{1,64}}")
    if event.startswith(RESERVED_EVENT_PREFIX):
        # Only the hub speaks as `hub.*` (hub.reset): a publisher cannot fake a reset.
        raise BadRequest(f"{where}event types starting with {RESERVED_EVENT_PREFIX!r} are reserved")
    if "data" not in obj:
        raise BadRequest(f"{where}'data' is required")
    data = obj["data"]
    text = data if isinstance(data, str) else dumps(data)
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise BadRequest(f"{where}'data' holds a lone surrogate, not valid Unicode") from None
    if size > max_payload_bytes:
        raise PayloadTooLarge(
            f"{where}'data' is {size} bytes, over the limit of {max_payload_bytes}"
        )
    return Message(channels=tuple(channels), event=event, data=text)
