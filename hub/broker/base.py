"""The Broker interface: where history is kept and live entries come from.

Every channel has an epoch (set when the channel is created, new again after it
is wiped) and contiguous offsets from 1. An entry's id is `<offset>-0`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hub.message import Message
from hub.sse import event_body


@dataclass(slots=True)  # never changed; not frozen: that costs ~0.5 µs more per entry made
class Entry:
    """One published message on one channel; `body` is its SSE bytes less the `id:` line.

    `stamp` tells this entry from another that a failover let reuse its offset
    (0: not known, as in the embedded broker, which cannot lose entries).
    """

    offset: int
    event: str
    data: str
    body: bytes = field(repr=False, compare=False)
    stamp: int = 0

    @classmethod
    def create(cls, offset: int, event: str, data: str, stamp: int = 0) -> Entry:
        return cls(offset, event, data, event_body(event, data), stamp)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Entries after a position, read atomically with the channel's epoch and last offset.

    `epoch` is 0 when the channel does not exist (never published, or expired).
    `anchor` is the stamp of the entry at the position read after (at the top when
    read "from now"): a position with another stamp names an entry that a failover
    lost. None when it cannot be told (trimmed, never stamped, or the embedded broker).
    """

    epoch: int
    top: int
    entries: list[Entry]
    anchor: int | None = None


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An Idempotency-Key scoped to its publisher, and a hash of the request it answered."""

    key: str
    fingerprint: str


def entry_id(offset: int) -> str:
    return f"{offset}-0"


class LiveSink(Protocol):
    """Receives live entries from a broker (the process's fan-out)."""

    def deliver(self, channel: str, epoch: int, entry: Entry) -> None: ...

    def resync(self, channels: Collection[str] | None = None) -> None:
        """Live delivery may have missed entries on `channels` (None: on every channel):
        each stream that follows one of them re-reads history."""


class Broker(ABC):
    # Called after every reconnect of the live connection (metrics).
    on_reconnect: Callable[[], None] | None = None

    @abstractmethod
    async def start(self, sink: LiveSink) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(
        self, messages: Sequence[Message], idempotency: Idempotency | None = None
    ) -> list[dict[str, str]]:
        """Append every message to each of its channels, atomically, in order.

        Returns the entry id per channel for each message. With `idempotency`, a
        key seen before returns the first answer and publishes nothing;
        raises IdempotencyConflict when the key was used for another request.
        """

    @abstractmethod
    async def recorded(self, key: str, channel: str) -> str | None:
        """The entry id an idempotency `key` published on `channel`, while it is
        remembered; None otherwise."""

    @abstractmethod
    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        """Entries with offset > `after`, at most `limit`, and the anchor at `after`.

        With `after` None: only the epoch, top and the top's anchor (the position "now").
        """

    @abstractmethod
    def subscribe(self, channel: str) -> asyncio.Future[None]:
        """Add a reference to the live channel; the future completes once it is subscribed."""

    @abstractmethod
    def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def ready(self) -> bool:
        """True when publishes and live delivery both work."""
