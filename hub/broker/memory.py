"""The embedded broker: history and live delivery inside one process.

For development and fast tests; history is lost on restart. It keeps the same
contract as Redis: contiguous offsets, an epoch per channel, capped history
with a TTL, atomic publishes and idempotency keys.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence

from hub.broker.base import Broker, Entry, HistoryPage, Idempotency, LiveSink, entry_id
from hub.config import Settings
from hub.errors import IdempotencyConflict
from hub.message import Message


class _Channel:
    __slots__ = ("entries", "epoch", "top", "touched")

    def __init__(self, epoch: int, max_len: int) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: deque[Entry] = deque(maxlen=max_len)
        self.touched = time.monotonic()


class MemoryBroker(Broker):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channels: dict[str, _Channel] = {}
        self._idempotency: dict[str, tuple[float, str, list[dict[str, str]]]] = {}
        self._last_epoch = 0
        self._sink: LiveSink | None = None

    async def start(self, sink: LiveSink) -> None:
        self._sink = sink

    async def close(self) -> None:
        self._sink = None

    def _live_channel(self, name: str) -> _Channel | None:
        """The channel, after applying the history and meta TTLs lazily."""
        channel = self._channels.get(name)
        if channel is None:
            return None
        idle = time.monotonic() - channel.touched
        if idle > self._settings.history_meta_ttl:
            del self._channels[name]
            return None
        if idle > self._settings.history_ttl:
            channel.entries.clear()
        return channel

    def _new_epoch(self) -> int:
        self._last_epoch = max(time.time_ns() // 1000, self._last_epoch + 1)
        return self._last_epoch

    async def publish(
        self, messages: Sequence[Message], idempotency: Idempotency | None = None
    ) -> list[dict[str, str]]:
        now = time.monotonic()
        if idempotency is not None:
            self._expire_idempotency(now)
            prior = self._idempotency.get(idempotency.key)
            if prior is not None:
                if prior[1] != idempotency.fingerprint:
                    raise IdempotencyConflict("the key was used for a different request")
                return prior[2]
        results: list[dict[str, str]] = []
        for message in messages:
            ids: dict[str, str] = {}
            for name in message.channels:
                channel = self._live_channel(name)
                if channel is None:
                    channel = _Channel(self._new_epoch(), self._settings.history_max_len)
                    self._channels[name] = channel
                channel.top += 1
                channel.touched = now
                entry = Entry.create(channel.top, message.event, message.data)
                channel.entries.append(entry)
                ids[name] = entry_id(entry.offset)
                if self._sink is not None:
                    self._sink.deliver(name, channel.epoch, entry)
            results.append(ids)
        if idempotency is not None:
            expires = now + self._settings.idempotency_ttl
            self._idempotency[idempotency.key] = (expires, idempotency.fingerprint, results)
        return results

    def _expire_idempotency(self, now: float) -> None:
        expired = [key for key, (expires, _, _) in self._idempotency.items() if expires <= now]
        for key in expired:
            del self._idempotency[key]

    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        state = self._live_channel(channel)
        if state is None:
            return HistoryPage(0, 0, [])
        if after is None:
            return HistoryPage(state.epoch, state.top, [])
        # Offsets are contiguous, so the entry after `after` sits at a computable index.
        first = state.top - len(state.entries) + 1
        start = max(after + 1 - first, 0)
        entries = [state.entries[i] for i in range(start, min(start + limit, len(state.entries)))]
        return HistoryPage(state.epoch, state.top, entries)

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def unsubscribe(self, channel: str) -> None:
        return None

    async def ready(self) -> bool:
        return True
