"""Reading the replies of `lua/stream.lua`: a stream's summary, its messages."""

from __future__ import annotations

from typing import Any

from hub.durable.offsets import offset_at
from hub.durable.store import Config, Message, Snapshot


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot(reply: list[Any]) -> Snapshot:
    _, tail, closed, content_type, ttl, expires_at = (text(v) for v in reply[:6])
    config = Config(content_type, int(ttl) if ttl else None, expires_at or None, closed == "1")
    return Snapshot(config, offset_at(int(tail)), closed == "1")


def messages(flat: list[Any]) -> list[Message]:
    return [
        Message(bytes(flat[i + 1]), offset_at(int(text(flat[i]).split("-", 1)[0])))
        for i in range(0, len(flat), 2)
    ]
