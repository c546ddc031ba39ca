"""FanOut: the process's registry of open streams by channel; the brokers' live sink.

Delivery never blocks: each stream writes an entry to its socket at once, takes
it into its own bounded queue, or closes itself (a slow consumer), so one
stream cannot stall the others. One timer serves every stream's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any, Protocol

from hub.broker import Broker, Entry
from hub.delivery.reasons import Close
from hub.delivery.subscription import Subscription


class Receiver(Protocol):
    """Something told of a channel's live entries: a stream, a router, a waiting reader."""

    def offer(self, channel: str, epoch: int, entry: Entry) -> None: ...

    def request_resync(self) -> None: ...


class Router(Receiver, Protocol):
    """Takes a channel's live entries for the streams it indexes (a protocol front-end's
    streams, matched by what they select rather than by channel)."""

    def add(self, sub: Subscription) -> None: ...

    def remove(self, sub: Subscription) -> None: ...


class FanOut:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        # A channel's receivers: its streams, or the one router that indexes them.
        self._by_channel: dict[str, set[Subscription | Receiver]] = {}
        self._routers: dict[str, Router] = {}
        self.streams: set[Subscription] = set()
        self._slots: dict[str, int] = {}
        # Bounded waits for subscriptions, oldest first, ended by the tick if still waiting.
        self._waits: deque[tuple[float, asyncio.Future[bool]]] = deque()

    def add(self, sub: Subscription) -> asyncio.Future[Any]:
        """Register `sub` for live entries; the future completes once the broker is subscribed."""
        self.streams.add(sub)
        confirmations = []
        for channel in sub.channels:
            router = self._routers.get(channel)
            if router is not None:
                router.add(sub)
            else:
                self._by_channel.setdefault(channel, set()).add(sub)
            confirmations.append(self._broker.subscribe(channel))
        if len(confirmations) == 1:
            return confirmations[0]  # most streams: no gathering future needed
        return asyncio.gather(*confirmations)

    @contextlib.asynccontextmanager
    async def registered(self, sub: Subscription) -> AsyncIterator[asyncio.Future[Any]]:
        """`sub` registered for the block, however the block ends; yields `add`'s future."""
        subscribed = self.add(sub)
        try:
            yield subscribed
        finally:
            self.remove(sub)

    def wait_subscribed(self, subscribed: asyncio.Future[Any], wait: float) -> asyncio.Future[bool]:
        """True once `subscribed` succeeds; False if it fails or about `wait` seconds pass
        first (the tick ends the wait: no timer per stream)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()

        def done(future: asyncio.Future[Any]) -> None:
            if not waiter.done():
                waiter.set_result(not future.cancelled() and future.exception() is None)

        subscribed.add_done_callback(done)
        self._waits.append((loop.time() + wait, waiter))
        return waiter

    def reserve(self, user_channel: str, limit: int) -> bool:
        """Take one of a user's stream slots (`limit` 0: no limit); False when none is left."""
        held = self._slots.get(user_channel, 0)
        if limit and held >= limit:
            return False
        self._slots[user_channel] = held + 1
        return True

    def release(self, user_channel: str) -> None:
        held = self._slots.pop(user_channel, 1) - 1
        if held > 0:
            self._slots[user_channel] = held

    def remove(self, sub: Subscription) -> None:
        if sub not in self.streams:
            return
        self.streams.discard(sub)
        for channel in sub.channels:
            router = self._routers.get(channel)
            if router is not None:
                router.remove(sub)
            subs = self._by_channel.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_channel[channel]
            self._broker.unsubscribe(channel)

    def deliver(self, channel: str, epoch: int, entry: Entry) -> None:
        for sub in tuple(self._by_channel.get(channel, ())):
            sub.offer(channel, epoch, entry)

    def tick(self, now: float, heartbeat: float) -> None:
        """Heartbeats and token expiry for every stream, from one timer (no timer per stream)."""
        for sub in tuple(self.streams):
            sub.tick(now, heartbeat)
        waits = self._waits
        while waits and (waits[0][0] <= now or waits[0][1].done()):
            _, waiter = waits.popleft()
            if not waiter.done():
                waiter.set_result(False)

    async def run_timer(self, heartbeat: float) -> None:
        """Tick several times per heartbeat interval, so pings leave at most a tick late."""
        loop = asyncio.get_running_loop()
        period = min(1.0, heartbeat / 4)
        while True:
            await asyncio.sleep(period)
            self.tick(loop.time(), heartbeat)

    def listen(self, channel: str, receiver: Receiver) -> asyncio.Future[None]:
        """`receiver` is offered `channel`'s live entries (and told to resync) until
        `unlisten`; the future completes once the broker is subscribed."""
        self._by_channel.setdefault(channel, set()).add(receiver)
        return self._broker.subscribe(channel)

    def unlisten(self, channel: str, receiver: Receiver) -> None:
        receivers = self._by_channel.get(channel)
        if receivers is not None and receiver in receivers:
            receivers.discard(receiver)
            if not receivers:
                del self._by_channel[channel]
            self._broker.unsubscribe(channel)

    def route(self, channel: str, router: Router) -> None:
        """`router` takes every live entry of `channel` and places it with its own streams."""
        self._routers[channel] = router
        self._by_channel[channel] = {router}

    def resync(self, channels: Collection[str] | None = None) -> None:
        subs: Iterable[Subscription | Receiver]
        if channels is None:
            subs = {*self.streams, *(r for rs in self._by_channel.values() for r in rs)}
        else:
            by_channel = self._by_channel
            subs = {sub for channel in channels for sub in by_channel.get(channel, ())}
        for sub in subs:
            sub.request_resync()

    def close_all(self, reason: Close) -> None:
        for sub in self.streams:
            sub.close(reason)
