"""Redis key names, in one place.

A channel's keys share the hash tag `{<channel>}` so that its stream, meta hash
and live channel live in one Redis Cluster slot.
"""

from __future__ import annotations

import hashlib


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def stream(self, channel: str) -> str:
        """The channel's history (a Redis Stream)."""
        return f"{self.prefix}{{{channel}}}:s"

    def meta(self, channel: str) -> str:
        """Hash with the channel's `epoch` and `top` (last offset)."""
        return f"{self.prefix}{{{channel}}}:m"

    def producers(self, channel: str) -> str:
        """A durable stream's idempotent producers (hash: id -> epoch:seq:updated)."""
        return f"{self.prefix}{{{channel}}}:p"

    def forks(self, channel: str) -> str:
        """The names of the forks that read through a durable stream (a set)."""
        return f"{self.prefix}{{{channel}}}:f"

    def live(self, channel: str) -> str:
        """The pub/sub channel that carries new entries."""
        return f"{self.prefix}{{{channel}}}"

    def channel_of(self, live: bytes) -> str:
        return live[len(self.prefix) + 1 : -1].decode()

    def idempotency(self, scoped_key: str, channel: str) -> str:
        """Where a publisher's Idempotency-Key is recorded for one channel (hashed: keys are
        free text), in the channel's slot: its script writes the record with the entries."""
        digest = hashlib.sha256(scoped_key.encode()).hexdigest()
        return f"{self.prefix}{{{channel}}}:i:{digest}"
