"""One open stream's live side: entries from the fan-out, and the hand-over from history.

The stream task drives it; the fan-out only ever calls `offer`, which never
blocks. While the stream is caught up and its task parked, a live entry is
written straight to the socket from the fan-out (one write, no task switch,
no timer); anything else queues for the task. While a backfill runs, live
entries are buffered and afterwards replayed through the same check as any
live entry: an entry at or below the channel's position is a duplicate and
dropped, the next offset is sent, and anything else (a gap, a new epoch)
triggers another backfill, which tells gaps with `hub.reset`. Offsets are
compared as integers, never as strings.

A subscription is built in layers, each a base class of the next so that the hot
path reaches every field directly (no part objects in between):
`hub.delivery.backfill.Backfill` (positions, the cursor and the backfill: the
cold path), `_Outlet` (the queues, direct writes, the task's wake-ups and the
heartbeat), then `Subscription` (live entries placed, and the hand-over).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from hub import sse
from hub.broker import Broker, Entry
from hub.delivery import cursor
from hub.delivery.backfill import Backfill, StreamObserver, Writer
from hub.delivery.cursor import NOWHERE, Position
from hub.delivery.reasons import Close

# Bytes handed to the socket per write: a slow client never pins more than this in the transport.
WRITE_BUDGET = 256 * 1024

# Writes without waiting; False when the socket is backed up (the task then takes over).
DirectWriter = Callable[[bytes], bool]


def _never() -> float:
    return 0.0


# A live entry waiting for a backfill to end, with the backfill round it arrived in.
_Pending = tuple[str, int, Entry, int]


class _Outlet(Backfill):
    """What waits to go out: frames for the socket, written at once while the task is
    parked or else queued for it, and live entries held while a backfill runs; the
    task's wake-ups, the heartbeat and the token's deadline; and the stream's end."""

    __slots__ = (
        "_clock",
        "_direct",
        "_outbox",
        "_outbox_bytes",
        "_parked",
        "_pending",
        "_queue_bytes",
        "_queue_size",
        "_wakeup",
        "_woken",
        "abort",
        "closed",
        "deadline",
        "last_write",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        queue_size: int,
        observer: StreamObserver | None,
        queue_bytes: int,
    ) -> None:
        super().__init__(channels, observer)
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        # Frames to write: the cursor and the body shared by every stream (never copied).
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_bytes = 0
        # Live entries are held until the first backfill has run.
        self._pending: list[_Pending] | None = []
        self._wakeup: asyncio.Future[None] | None = None
        self._woken = False
        # True while the task waits with nothing to do: live entries may then go straight out.
        self._parked = False
        self._direct: DirectWriter | None = None
        self._clock: Callable[[], float] = _never
        self.last_write = 0.0
        # When the stream must end (its token expires), on the event loop's clock.
        self.deadline: float | None = None
        self.closed: Close | None = None
        self.abort: Callable[[], None] | None = None

    def attach(self, direct: DirectWriter, clock: Callable[[], float]) -> None:
        """The socket writer for live entries while the task is parked, and the loop's clock."""
        self._direct = direct
        self._clock = clock
        self.last_write = clock()

    def _write_now(self, data: bytes) -> bool:
        if self._direct is None or not self._direct(data):
            return False
        self.last_write = self._clock()
        return True

    def tick(self, now: float, heartbeat: float) -> None:
        """Called by the fan-out's one timer: heartbeats and token expiry for every stream."""
        if self.closed is not None:
            return
        if self.deadline is not None and now >= self.deadline:
            self.close(Close.TOKEN_EXPIRED)
        elif now - self.last_write >= heartbeat and not (
            self._parked and self._write_now(sse.PING)
        ):
            self._wake()  # the task sends it, and notices a client that stopped reading

    def heartbeat_due(self, heartbeat: float) -> bool:
        return self._clock() - self.last_write >= heartbeat

    def _hold(self, item: _Pending) -> None:
        assert self._pending is not None
        if len(self._pending) >= self._queue_size:
            self.close(Close.SLOW_CONSUMER)
        else:
            self._pending.append(item)

    def close(self, reason: Close) -> None:
        if self.closed is None:
            self.closed = reason
            self._pending = None
            if reason == Close.SLOW_CONSUMER:
                self.observer.slow_consumer()
                self._outbox.clear()
                self._outbox_bytes = 0
                if self.abort is not None:
                    self.abort()
        self._wake()

    def take(self, budget: int = WRITE_BUDGET) -> bytes:
        """Queued frames coalesced into one write of about `budget` bytes at most."""
        parts: list[bytes] = []
        size = count = 0
        while self._outbox and (count == 0 or size < budget):
            event_id, body = self._outbox.popleft()
            parts.append(sse.frame(event_id, body) if event_id else body)
            size += len(parts[-1])
            self._outbox_bytes -= len(body)
            count += 1
        self.sent += count
        self.observer.delivered(count)
        return b"".join(parts)

    @property
    def has_output(self) -> bool:
        return bool(self._outbox)

    def _wake(self) -> None:
        self._woken = True
        self._parked = False  # from here on the task is due to run: entries queue behind it
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        """Until there is something to do, or `timeout` seconds pass (None: no timeout)."""
        if self._woken or self._outbox or self.closed is not None:
            self._woken = False
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        self._parked = self._pending is None and not self.needs_sync
        try:
            if timeout is None:
                await self._wakeup
            else:
                async with asyncio.timeout(max(timeout, 0)):
                    await self._wakeup
        except TimeoutError:
            pass
        finally:
            self._parked = False
            self._wakeup = None
            self._woken = False


class Subscription(_Outlet):
    """One open stream: live entries placed as they come, and the backfill rounds that
    hand over from history to live."""

    __slots__ = ("_round", "resyncs")

    def __init__(
        self,
        channels: tuple[str, ...],
        queue_size: int,
        observer: StreamObserver | None = None,
        queue_bytes: int = 8 * 2**20,
    ) -> None:
        super().__init__(channels, queue_size, observer, queue_bytes)
        self._round = 0
        self.resyncs = 0  # how often a resync was asked for (a reconnect, a gap)

    def settle(self, resyncs: int) -> None:
        """The positions were taken after the live channels were subscribed: whatever was
        published since arrives live, so no backfill is due. Held entries are replayed.

        `resyncs` is the count from before the positions were read: a resync asked for
        since (the pub/sub link reconnected) keeps the backfill due.
        """
        if self._unknown or None in self._positions or self.resyncs != resyncs:
            return  # the broker could not tell, or entries may be missing: backfill
        self.needs_sync = False
        self._replay()

    # -- called by the fan-out for every live entry: never blocks ------------------------------

    def offer(self, channel: str, epoch: int, entry: Entry) -> None:
        if self.closed is not None:
            return
        if self._pending is not None:
            self._hold((channel, epoch, entry, self._round))
        elif not self._place(channel, epoch, entry):
            # A gap or another epoch: read history again; this entry waits its turn.
            self.request_resync()
            self._hold((channel, epoch, entry, self._round))

    def _place(self, channel: str, epoch: int, entry: Entry) -> bool:
        """Send `entry` or drop it as already sent; False when it does not follow on."""
        i = self._index[channel]
        position = self._positions[i]
        if position is not None and position.epoch == epoch:
            if entry.offset <= position.offset:
                return True  # already sent (backfill and live overlap)
            if entry.offset == position.offset + 1:
                self._accept(i, epoch, entry)
                return True
        elif position == NOWHERE and entry.offset == 1:
            self._accept(i, epoch, entry)
            return True
        return False

    def _accept(self, i: int, epoch: int, entry: Entry) -> None:
        # The hot path of every live delivery: `_set` and `cursor` inlined.
        position = Position(epoch, entry.offset, entry.stamp)
        self._positions[i] = position
        parts = self._parts
        parts[i] = cursor.encode_part(self._tags[i], position)
        self._emit(parts[0] if len(parts) == 1 else cursor.encode(parts), entry.body)

    def _emit(self, event_id: str, body: bytes) -> None:
        """One frame out: to the socket now while the task is parked, else queued for it.
        An empty `event_id`: `body` is the whole frame."""
        direct = self._direct
        if (
            self._parked
            and direct is not None
            and direct(sse.frame(event_id, body) if event_id else body)
        ):
            self.last_write = self._clock()
            self.sent += 1
            self.observer.delivered(1)
            return
        self._outbox.append((event_id, body))
        self._outbox_bytes += len(body)
        if len(self._outbox) > self._queue_size or self._outbox_bytes > self._queue_bytes:
            self.close(Close.SLOW_CONSUMER)
            return
        self._wake()

    # -- the hand-over --------------------------------------------------------------------------

    def request_resync(self) -> None:
        self.needs_sync = True
        self.resyncs += 1
        if self._pending is None:
            self._pending = []
        self._wake()

    async def sync(self, broker: Broker, write: Writer, page_size: int) -> None:
        """Backfill from the current positions, then replay what arrived live meanwhile."""
        while self.closed is None:
            if self._pending is None:
                self._pending = []
            while self._outbox:
                await write(self.take())  # frames accepted before this backfill go first
            self.needs_sync = False
            self._round += 1
            try:
                await self._backfill(broker, write, page_size)
            except BaseException:
                self.needs_sync = True
                raise
            self._replay()
            if not self.needs_sync:
                return

    def _replay(self) -> None:
        pending, self._pending = self._pending, None
        for item in pending or ():
            if self._pending is not None:  # a resync was asked for: keep the order
                self._hold(item)
            elif not self._place(*item[:3]) and item[3] == self._round:
                self.request_resync()
                self._hold(item)
            # An entry that arrived before this round's history reads and still does not
            # follow on is stale (that history told what happened after it): dropped.
