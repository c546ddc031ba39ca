"""Why a stream is told to reset, and why the hub ends one: the strings clients, logs
and metrics see. `StrEnum`s, so each is its wire string, byte for byte."""

from __future__ import annotations

from enum import StrEnum


class Reset(StrEnum):
    """A `hub.reset` event's reason: entries the client asked for cannot be sent."""

    # Gone from history (trimmed or expired), or the channel was wiped and recreated.
    TRIMMED = "history_trimmed"
    # The client's cursor could not be read, or the broker could not give a position.
    UNKNOWN = "unknown_cursor"
    # A failover lost entries the client had; newer entries may reuse their offsets.
    LOST = "history_lost"


class Close(StrEnum):
    """Why the hub ended a stream (the client going away is not one: nothing closes it)."""

    TOKEN_EXPIRED = "token_expired"
    SLOW_CONSUMER = "slow_consumer"
    SHUTDOWN = "shutdown"
