"""One open stream's state: its channels, its cursor, and the hand-over from history to live.

The stream task drives it; the fan-out only ever calls `offer`, which never
blocks. While the stream is caught up and its task parked, a live entry is
written straight to the socket from the fan-out (one write, no task switch,
no timer); anything else queues for the task. While a backfill runs, live
entries are buffered and afterwards replayed through the same check as any
live entry: an entry at or below the channel's position is a duplicate and
dropped, the next offset is sent, and anything else (a gap, a new epoch)
triggers another backfill, which tells gaps with `hub.reset`. Offsets are
compared as integers, never as strings.

Every position keeps the stamp of the entry at its offset: a backfill that finds
another stamp there (or the channel's top below the position) knows a failover
lost entries the client had, and that their offsets may have been reused.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from hub import sse
from hub.broker import Broker, Entry, HistoryPage
from hub.delivery import cursor
from hub.delivery.cursor import NOWHERE, Position
from hub.errors import BrokerUnavailable

RESET_EVENT = "hub.reset"
TOKEN_EXPIRED = "token_expired"
TRIMMED = "history_trimmed"
UNKNOWN = "unknown_cursor"
HISTORY_LOST = "history_lost"
EARLIEST = "earliest"
SLOW_CONSUMER = "slow_consumer"
# Bytes handed to the socket per write: a slow client never pins more than this in the transport.
WRITE_BUDGET = 256 * 1024

Writer = Callable[[bytes], Awaitable[None]]
# Writes without waiting; False when the socket is backed up (the task then takes over).
DirectWriter = Callable[[bytes], bool]


class StreamObserver(Protocol):
    """What a stream reports as it goes (the metrics)."""

    def delivered(self, count: int) -> None: ...

    def backfilled_events(self, count: int) -> None: ...

    def reset_sent(self, reason: str) -> None: ...

    def slow_consumer(self) -> None: ...


class _Unobserved:
    def delivered(self, count: int) -> None:
        pass

    def backfilled_events(self, count: int) -> None:
        pass

    def reset_sent(self, reason: str) -> None:
        pass

    def slow_consumer(self) -> None:
        pass


def _never() -> float:
    return 0.0


# A live entry waiting for a backfill to end, with the backfill round it arrived in.
_Pending = tuple[str, int, Entry, int]


class Subscription:
    __slots__ = (
        "_clock",
        "_direct",
        "_earliest",
        "_index",
        "_outbox",
        "_outbox_bytes",
        "_parked",
        "_parts",
        "_pending",
        "_positions",
        "_queue_bytes",
        "_queue_size",
        "_round",
        "_tags",
        "_unknown",
        "_wakeup",
        "_woken",
        "abort",
        "channels",
        "closed",
        "deadline",
        "last_write",
        "needs_sync",
        "observer",
        "resyncs",
        "sent",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        queue_size: int,
        observer: StreamObserver | None = None,
        queue_bytes: int = 8 * 2**20,
    ) -> None:
        self.channels = channels
        self._index = {channel: i for i, channel in enumerate(channels)}
        self._tags = [cursor.channel_tag(channel) for channel in channels]
        # None: "from now", fixed by `take_positions` or else by the first backfill.
        self._positions: list[Position | None] = [None] * len(channels)
        self._parts = [""] * len(channels)
        self._earliest: set[int] = set()
        # Channels whose position is unknown: the first backfill tells them `unknown_cursor`.
        self._unknown: set[int] = set()
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        # Frames to write: the cursor and the body shared by every stream (never copied).
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_bytes = 0
        # Live entries are held until the first backfill has run.
        self._pending: list[_Pending] | None = []
        self._round = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._woken = False
        # True while the task waits with nothing to do: live entries may then go straight out.
        self._parked = False
        self._direct: DirectWriter | None = None
        self._clock: Callable[[], float] = _never
        self.last_write = 0.0
        # When the stream must end (its token expires), on the event loop's clock.
        self.deadline: float | None = None
        self.needs_sync = True
        self.resyncs = 0  # how often a resync was asked for (a reconnect, a gap)
        self.closed: str | None = None
        self.sent = 0
        self.abort: Callable[[], None] | None = None
        self.observer: StreamObserver = observer or _Unobserved()

    # -- where the stream starts -------------------------------------------------------------

    def start_from(self, last_event_id: str | None) -> None:
        """Positions from the client's last id: a cursor, `earliest`, or nothing (from now)."""
        if not last_event_id:
            return
        if last_event_id == EARLIEST:
            for i in range(len(self.channels)):
                self._set(i, NOWHERE)
                self._earliest.add(i)
            return
        try:
            known = cursor.decode(last_event_id)
        except cursor.CursorError:
            self._unknown = set(range(len(self.channels)))
            return
        if len(set(self._tags)) != len(self._tags):
            return  # two channels share a tag: neither position can be trusted
        for i, tag in enumerate(self._tags):
            if tag in known:
                self._set(i, known[tag])

    @property
    def from_now(self) -> bool:
        """No position came from the client: the stream starts with what is published next."""
        return not (self._unknown or self._earliest) and all(p is None for p in self._positions)

    async def take_positions(self, broker: Broker) -> None:
        """Fix "from now" before the response starts, so that open means subscribed.

        When the broker is down, the positions it could not give are told to the
        client as `unknown_cursor` by the first backfill.
        """
        try:
            for i, channel in enumerate(self.channels):
                if self._positions[i] is None:
                    page = await broker.history(channel, None, 0)
                    self._set(i, Position(page.epoch, page.top, page.anchor or 0))
        except BrokerUnavailable:
            self._unknown.update(i for i, p in enumerate(self._positions) if p is None)

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

    def initial_id(self) -> str | None:
        """The cursor to hand the client before any event (so a reconnect right after
        open still resumes exactly); None while a position is not settled."""
        if self._unknown or self._earliest or None in self._positions:
            return None
        return self.cursor()

    def _set(self, i: int, position: Position) -> None:
        self._positions[i] = position
        self._parts[i] = cursor.encode_part(self._tags[i], position)

    def cursor(self) -> str:
        return cursor.encode(self._parts)

    # -- live side (called by the fan-out; never blocks) -----------------------------------

    def offer(self, channel: str, epoch: int, entry: Entry) -> None:
        if self.closed is not None:
            return
        if self._pending is not None:
            self._hold((channel, epoch, entry, self._round))
        elif not self._place(channel, epoch, entry):
            # A gap or another epoch: read history again; this entry waits its turn.
            self.request_resync()
            self._hold((channel, epoch, entry, self._round))

    def _hold(self, item: _Pending) -> None:
        assert self._pending is not None
        if len(self._pending) >= self._queue_size:
            self.close(SLOW_CONSUMER)
        else:
            self._pending.append(item)

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
        # The hot path of every live delivery: `_set`, `cursor` and `_write_now` inlined.
        position = Position(epoch, entry.offset, entry.stamp)
        self._positions[i] = position
        parts = self._parts
        parts[i] = cursor.encode_part(self._tags[i], position)
        event_id = parts[0] if len(parts) == 1 else cursor.encode(parts)
        direct = self._direct
        if self._parked and direct is not None and direct(sse.frame(event_id, entry.body)):
            self.last_write = self._clock()
            self.sent += 1
            self.observer.delivered(1)
            return
        self._outbox.append((event_id, entry.body))
        self._outbox_bytes += len(entry.body)
        if len(self._outbox) > self._queue_size or self._outbox_bytes > self._queue_bytes:
            self.close(SLOW_CONSUMER)
            return
        self._wake()

    # -- direct writes and the shared heartbeat -----------------------------------------------

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
            self.close(TOKEN_EXPIRED)
        elif now - self.last_write >= heartbeat and not (
            self._parked and self._write_now(sse.PING)
        ):
            self._wake()  # the task sends it, and notices a client that stopped reading

    def heartbeat_due(self, heartbeat: float) -> bool:
        return self._clock() - self.last_write >= heartbeat

    def request_resync(self) -> None:
        self.needs_sync = True
        self.resyncs += 1
        if self._pending is None:
            self._pending = []
        self._wake()

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self._pending = None
            if reason == SLOW_CONSUMER:
                self.observer.slow_consumer()
                self._outbox.clear()
                self._outbox_bytes = 0
                if self.abort is not None:
                    self.abort()
        self._wake()

    # -- stream task side --------------------------------------------------------------------

    def take(self, budget: int = WRITE_BUDGET) -> bytes:
        """Queued frames coalesced into one write of about `budget` bytes at most."""
        parts: list[bytes] = []
        size = count = 0
        while self._outbox and (count == 0 or size < budget):
            event_id, body = self._outbox.popleft()
            parts.append(sse.frame(event_id, body))
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

    async def _backfill(self, broker: Broker, write: Writer, page_size: int) -> None:
        """Read every channel's history first, then change positions and write.

        Positions and resets are applied only once every read succeeded, so an
        outage midway loses no reset: the retry starts from the same positions.
        """
        resets: dict[str, list[str]] = {}
        if self._unknown:
            resets[UNKNOWN] = [self.channels[i] for i in sorted(self._unknown)]
        starts: list[Position] = []
        pages: list[HistoryPage | None] = []
        for i, channel in enumerate(self.channels):
            start, page, reason = await plan(
                broker, channel, self._positions[i], page_size, earliest=i in self._earliest
            )
            starts.append(start)
            pages.append(page)
            if reason is not None and i not in self._unknown:
                resets.setdefault(reason, []).append(channel)
        for i, start in enumerate(starts):
            self._set(i, start)
        self._unknown.clear()
        self._earliest.clear()
        for reason, channels in resets.items():
            data = json.dumps({"reason": reason, "channels": channels}, separators=(",", ":"))
            await write(sse.frame(self.cursor(), sse.event_body(RESET_EVENT, data)))
            self.observer.reset_sent(reason)
        for i, page in enumerate(pages):
            if page is not None:
                await self._send_pages(i, page, broker, write, page_size)

    async def _send_pages(
        self, i: int, page: HistoryPage, broker: Broker, write: Writer, page_size: int
    ) -> None:
        while True:
            position = self._positions[i]
            assert position is not None
            if (
                page.epoch != position.epoch
                or lost(position, page)
                or (page.entries and page.entries[0].offset != position.offset + 1)
            ):
                # Trimmed, wiped or lost in a failover while paging: the next round tells it.
                self.needs_sync = True
                return
            frames = []
            for entry in page.entries:
                self._set(i, Position(page.epoch, entry.offset, entry.stamp))
                frames.append(sse.frame(self.cursor(), entry.body))
            if frames:
                self.sent += len(frames)
                await write(b"".join(frames))
                self.observer.delivered(len(frames))
                self.observer.backfilled_events(len(frames))
            if len(page.entries) < page_size:
                return
            page = await broker.history(self.channels[i], page.entries[-1].offset, page_size)


def lost(position: Position, page: HistoryPage) -> bool:
    """Whether the channel (in the position's epoch) no longer holds the entry the
    position names: its top is below it, or the entry there has another stamp."""
    if position.offset > page.top:
        return True
    return bool(position.stamp) and page.anchor is not None and page.anchor != position.stamp


async def plan(
    broker: Broker,
    channel: str,
    position: Position | None,
    page_size: int,
    *,
    earliest: bool = False,
) -> tuple[Position, HistoryPage | None, str | None]:
    """Where a channel continues after `position` (None: from now), its first page, and
    the reset it owes. `earliest`: the client asked for all retained history, so none
    of it being gone is a gap.
    """
    if position is None:
        page = await broker.history(channel, None, 0)
        return Position(page.epoch, page.top, page.anchor or 0), None, None
    page = await broker.history(channel, position.offset, page_size)
    reason = None
    if page.epoch == 0:  # the channel is gone: wiped or expired
        return NOWHERE, None, None if position == NOWHERE else TRIMMED
    if position.epoch != page.epoch:
        if position != NOWHERE:
            reason = TRIMMED  # wiped and recreated: all of the new epoch is unseen
            page = await broker.history(channel, 0, page_size)
        position = Position(page.epoch, 0)
    elif lost(position, page):
        # A failover lost what the client had (or the channel went back to an older
        # snapshot): newer entries may reuse those offsets, so all retained is sent again.
        reason = HISTORY_LOST
        page = await broker.history(channel, 0, page_size)
        position = Position(page.epoch, 0)
    elif not position.stamp and page.anchor is not None:
        position = position._replace(stamp=page.anchor)  # a cursor without one is checked next
    first = page.entries[0].offset if page.entries else page.top + 1
    if first > position.offset + 1:
        if reason is None and not earliest:
            reason = TRIMMED
        position = Position(page.epoch, first - 1)
    return position, page, reason
