"""A Mercure update: read from a publish form, kept in the hub's log as one entry, and
written to subscribers as its SSE frame.

The log entry's data is a compact JSON envelope (topics, data, private, id,
type, retry); its event is the update's type. An update without a publisher's
id takes the id its place in the log gives it (`#` and the log position, a
fragment IRI, which publishers may not use): it needs no index to resume from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from hub.errors import BadRequest, PayloadTooLarge
from hub.mercure.topics import CONTROLS, check_text
from hub.message import DEFAULT_EVENT, Message

# The hub's log of every Mercure update: one channel, so one order to resume in.
LOG = "mercure:updates"
GENERATED = "#"
# The id of a frame that is no update (`hub.reset`): the stream's position on the log.
POSITION = "#@"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELDS = frozenset({"topic", "data", "private", "id", "type", "retry"})
_ONCE = _FIELDS - {"topic"}
_MAX_TOPICS = 32
_MAX_ID = 1024


@dataclass(frozen=True, slots=True)
class Update:
    topics: tuple[str, ...]  # the first is the canonical IRI, the rest alternates
    data: str
    private: bool = False
    id: str = ""  # the publisher's; empty: generated from the log position
    type: str = ""
    retry: int | None = None

    def message(self) -> Message:
        envelope: dict[str, object] = {"t": list(self.topics), "d": self.data}
        if self.private:
            envelope["p"] = 1
        if self.id:
            envelope["i"] = self.id
        if self.type:
            envelope["y"] = self.type
        if self.retry is not None:
            envelope["r"] = self.retry
        return Message((LOG,), self.type or DEFAULT_EVENT, orjson.dumps(envelope).decode())

    def frame(self, generated_id: str) -> bytes:
        """The SSE frame: `id`, then `event` and `retry` when given, then the data lines."""
        lines = [f"id: {self.id or generated_id}\n"]
        if self.type:
            lines.append(f"event: {self.type}\n")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}\n")
        lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(self.data))
        lines.append("\n")
        return "".join(lines).encode()


def decode(data: str) -> Update | None:
    """The update a log entry holds; None for anything else (never written by this hub)."""
    try:
        envelope = orjson.loads(data)
        topics = tuple(envelope["t"])
        retry = envelope.get("r")
        return Update(
            topics,
            envelope["d"],
            bool(envelope.get("p")),
            envelope.get("i", ""),
            envelope.get("y", ""),
            int(retry) if retry is not None else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def valid_id(value: str) -> bool:
    return value == value.strip() and not CONTROLS.search(value)


def _no_line_break(value: str, field: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise BadRequest(f"`{field}` must not hold CR, LF or NUL")
    return value


def parse_form(body: bytes, max_data: int) -> Update:
    """A publish request's form (`application/x-www-form-urlencoded`), checked field by field."""
    try:
        text = body.decode()
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(body), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(
            "the body is not a UTF-8 form (application/x-www-form-urlencoded)"
        ) from None
    seen: dict[str, str] = {}
    topics: list[str] = []
    for name, value in pairs:
        if name == "topic":
            topics.append(check_text(value, "`topic`"))
        elif name in _ONCE:
            if name in seen:
                raise BadRequest(f"`{name}` must be given at most once")
            seen[name] = value
        # Other fields (the old `target`, a client's extras) are ignored, as the reference hub does.
    if not topics:
        raise BadRequest("missing `topic`")
    if len(topics) > _MAX_TOPICS:
        raise BadRequest(f"at most {_MAX_TOPICS} topics per update")
    data = seen.get("data", "")
    if len(data.encode()) > max_data:
        raise PayloadTooLarge(f"`data` is larger than {max_data} bytes")
    update_id = seen.get("id", "")
    if update_id and not valid_id(update_id):
        # What a client sends back as Last-Event-ID: an id it could not send back intact
        # (a control character; spaces at an end, which HTTP trims) would cut it off.
        raise BadRequest("`id` must hold no control characters nor start or end with a space")
    if update_id.startswith(GENERATED):
        raise BadRequest("`id` must not start with '#' (the hub's own ids do)")
    if len(update_id) > _MAX_ID:
        raise BadRequest(f"`id` is longer than {_MAX_ID} characters")
    if len(seen.get("type", "")) > _MAX_ID:
        raise BadRequest(f"`type` is longer than {_MAX_ID} characters")
    retry = seen.get("retry")
    if retry is not None and not (retry.isascii() and retry.isdigit() and len(retry) <= 10):
        raise BadRequest("`retry` must be ASCII digits (milliseconds)")
    return Update(
        tuple(dict.fromkeys(topics)),
        data,
        "private" in seen,
        update_id,
        _no_line_break(seen.get("type", ""), "type"),
        int(retry) if retry is not None else None,
    )
