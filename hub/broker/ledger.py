"""The books of one pub/sub link: which channels its subscribers want, which the server
has been asked for, which a PING reply has confirmed, and who waits for a confirmation.

No I/O here: the link (`hub.broker.live`) sends what `next_flush` says and feeds the
PING replies back to `pong`.
"""

from __future__ import annotations

import asyncio

Waiter = tuple[str, asyncio.Future[None]]


class Ledger:
    __slots__ = (
        "confirmed",
        "dirty",
        "live_token",
        "on_server",
        "refs",
        "subscribed_at",
        "token",
        "unsent",
        "waiting",
    )  # fmt: skip

    def __init__(self) -> None:
        self.refs: dict[str, int] = {}
        self.on_server: set[str] = set()
        # Channels gained or lost since the last flush: a flush costs what changed, not all.
        self.dirty: set[str] = set()
        self.confirmed: set[str] = set()
        # Token of the flush that last sent a channel's SUBSCRIBE: a PING reply confirms
        # only channels subscribed at or before it.
        self.subscribed_at: dict[str, int] = {}
        # Futures waiting for a PING reply: token -> waiters; `unsent`: for the next flush.
        self.waiting: dict[int, list[Waiter]] = {}
        self.unsent: list[Waiter] = []
        self.token = 0
        self.live_token = -1  # the flush whose PING reply marks a new connection live

    def subscribe(self, channel: str, future: asyncio.Future[None]) -> bool:
        """One more subscriber of `channel`; True when a flush is needed."""
        count = self.refs.get(channel, 0) + 1
        self.refs[channel] = count
        if count == 1:
            self.dirty.add(channel)
        if channel in self.confirmed:
            future.set_result(None)
            return False
        self.unsent.append((channel, future))
        return True

    def unsubscribe(self, channel: str) -> bool:
        """One subscriber less; True when the channel is left (a flush is needed)."""
        count = self.refs.get(channel, 0) - 1
        if count > 0:
            self.refs[channel] = count
            return False
        self.refs.pop(channel, None)
        self.dirty.add(channel)
        self.confirmed.discard(channel)
        return True

    def move_out(self, channel: str) -> tuple[int, list[asyncio.Future[None]]]:
        """Forgets `channel`: its reference count and the subscribers still waiting."""
        count = self.refs.pop(channel, 0)
        self.dirty.add(channel)
        self.confirmed.discard(channel)
        waiters: list[asyncio.Future[None]] = []
        for queue in [self.unsent, *self.waiting.values()]:
            waiters += [future for name, future in queue if name == channel]
            queue[:] = [(name, future) for name, future in queue if name != channel]
        return count, waiters

    def move_in(self, channel: str, count: int, waiters: list[asyncio.Future[None]]) -> None:
        self.refs[channel] = self.refs.get(channel, 0) + count
        self.dirty.add(channel)
        self.confirmed.discard(channel)
        self.unsent += [(channel, future) for future in waiters]

    def connected(self) -> None:
        """A new connection holds nothing: everything is to be subscribed again, and the
        next flush's PING reply marks it live."""
        self.on_server = set()
        self.subscribed_at = {}
        self.dirty = set(self.refs)
        self.confirmed = set()
        for waiters in self.waiting.values():
            self.unsent.extend(waiters)
        self.waiting.clear()
        self.live_token = 0

    def dropped_by_server(self, channel: str) -> bool:
        """The server unsubscribed `channel` (its slot moved); True if it is still wanted."""
        if channel not in self.refs or channel not in self.on_server:
            return False  # the answer to our own unsubscribe
        self.on_server.discard(channel)
        self.confirmed.discard(channel)
        self.subscribed_at.pop(channel, None)
        return True

    def next_flush(self) -> tuple[list[str], list[str], int]:
        """The channels to subscribe and to leave now, and the token of the PING that
        follows them; everyone waiting so far waits for that PING's reply."""
        dirty, self.dirty = self.dirty, set()
        add = sorted(c for c in dirty if c in self.refs and c not in self.on_server)
        drop = sorted(c for c in dirty if c not in self.refs and c in self.on_server)
        self.on_server.update(add)
        self.on_server.difference_update(drop)
        self.token += 1
        token = self.token
        for channel in add:
            self.subscribed_at[channel] = token
        for channel in drop:
            self.subscribed_at.pop(channel, None)
        self.waiting[token] = self.unsent
        self.unsent = []
        if self.live_token == 0:
            self.live_token = token
        return add, drop, token

    def pong(self, token: int) -> bool:
        """The reply to PING `token`: what was subscribed before it is confirmed and its
        waiters told. True when it is the reply that marks the connection live."""
        for waited in [t for t in self.waiting if t <= token]:
            for channel, future in self.waiting.pop(waited):
                if channel in self.on_server and self.subscribed_at.get(channel, 0) <= token:
                    self.confirmed.add(channel)
                if not future.done():
                    future.set_result(None)
        return token == self.live_token

    def cancel_waiters(self) -> None:
        for waiters in [*self.waiting.values(), self.unsent]:
            for _, future in waiters:
                future.cancel()
