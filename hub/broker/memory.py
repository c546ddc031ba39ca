"""The embedded broker: history and live delivery inside one process.

For development and fast tests; history is lost on restart. It keeps the same
contract as Redis: contiguous offsets, an epoch per channel, capped history
with a TTL, atomic publishes and idempotency keys.

Idempotency keys are remembered for `idempotency_ttl`, and at most
`MAX_IDEMPOTENCY_KEYS` of them: past that many, the oldest is forgotten first
(a retry with it would publish again), so memory stays bounded however many
keyed publishes arrive within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from hub.broker.base import Broker, Entry, HistoryPage, Idempotency, LiveSink, entry_id
from hub.config import Settings
from hub.errors import IdempotencyConflict
from hub.message import Message
from hub.sse import event_body

MAX_IDEMPOTENCY_KEYS = 100_000


class _Kept:
    """An entry as history keeps it: the message's data (one string for all its targets).
    Its SSE body is made again when history is read rather than kept beside the data."""

    __slots__ = ("data", "event", "offset")

    def __init__(self, offset: int, event: str, data: str) -> None:
        self.offset = offset
        self.event = event
        self.data = data

    def entry(self) -> Entry:
        return Entry.create(self.offset, self.event, self.data)


class _Channel:
    __slots__ = ("entries", "epoch", "top", "touched")

    def __init__(self, epoch: int, max_len: int, now: float) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: deque[_Kept] = deque(maxlen=max_len)
        self.touched = now


class MemoryBroker(Broker):
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_idempotency_keys: int = MAX_IDEMPOTENCY_KEYS,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        # key -> (expiry, fingerprint, answer). Every key lives the same TTL, so insertion
        # order is expiry order: expired keys are taken from the front, the rest untouched.
        self._idempotency: OrderedDict[str, tuple[float, str, list[dict[str, str]]]] = OrderedDict()
        self._max_keys = max_idempotency_keys
        self._last_epoch = 0
        self._sink: LiveSink | None = None

    async def start(self, sink: LiveSink) -> None:
        self._sink = sink

    async def close(self) -> None:
        self._sink = None

    @property
    def idempotency_keys(self) -> int:
        """How many Idempotency-Keys are remembered now."""
        return len(self._idempotency)

    def _live_channel(self, name: str) -> _Channel | None:
        """The channel, after applying the history and meta TTLs lazily."""
        channel = self._channels.get(name)
        if channel is None:
            return None
        idle = self._clock() - channel.touched
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
        now = self._clock()
        if idempotency is not None:
            self._expire_idempotency(now)
            prior = self._idempotency.get(idempotency.key)
            if prior is not None:
                if prior[1] != idempotency.fingerprint:
                    raise IdempotencyConflict("the key was used for a different request")
                return prior[2]
        results: list[dict[str, str]] = []
        sink = self._sink
        for message in messages:
            ids: dict[str, str] = {}
            # Made once, for every target's live delivery.
            body = event_body(message.event, message.data) if sink is not None else b""
            for name in message.channels:
                channel = self._live_channel(name)
                if channel is None:
                    channel = _Channel(self._new_epoch(), self._settings.history_max_len, now)
                    self._channels[name] = channel
                channel.top += 1
                channel.touched = now
                channel.entries.append(_Kept(channel.top, message.event, message.data))
                ids[name] = entry_id(channel.top)
                if sink is not None:
                    entry = Entry(channel.top, message.event, message.data, body)
                    sink.deliver(name, channel.epoch, entry)
            results.append(ids)
        if idempotency is not None:
            self._remember(idempotency, now, results)
        return results

    def _remember(
        self, idempotency: Idempotency, now: float, results: list[dict[str, str]]
    ) -> None:
        expires = now + self._settings.idempotency_ttl
        self._idempotency[idempotency.key] = (expires, idempotency.fingerprint, results)
        while len(self._idempotency) > self._max_keys:
            self._idempotency.popitem(last=False)

    def _expire_idempotency(self, now: float) -> None:
        """Forgets the keys past their TTL: only those are looked at."""
        keys = self._idempotency
        while keys and next(iter(keys.values()))[0] <= now:
            keys.popitem(last=False)

    async def recorded(self, key: str, channel: str) -> str | None:
        self._expire_idempotency(self._clock())
        prior = self._idempotency.get(key)
        if prior is None:
            return None
        return next((ids[channel] for ids in prior[2] if channel in ids), None)

    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        state = self._live_channel(channel)
        if state is None:
            return HistoryPage(0, 0, [])
        if after is None:
            return HistoryPage(state.epoch, state.top, [])
        # Offsets are contiguous, so the entry after `after` sits at a computable index.
        first = state.top - len(state.entries) + 1
        start = max(after + 1 - first, 0)
        end = min(start + limit, len(state.entries))
        return HistoryPage(
            state.epoch, state.top, [state.entries[i].entry() for i in range(start, end)]
        )

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def unsubscribe(self, channel: str) -> None:
        return None

    async def ready(self) -> bool:
        return True
