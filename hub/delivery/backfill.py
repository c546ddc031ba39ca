"""The cold path of a stream: where it starts, and catching it up from history.

`Backfill` is the base of `Subscription` (`hub.delivery.subscription`), which adds
the live side. It keeps each channel's position and the cursor made of them: set
from the client's last id or the channel's top, then moved by history. A backfill
reads every channel's history and plans it (`resume.plan`) before it changes a
position or writes anything, then writes the resets, then the pages.

Every position keeps the stamp of the entry at its offset: a backfill that finds
another stamp there (or the channel's top below the position) knows a failover
lost entries the client had, and that their offsets may have been reused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Protocol

from hub import sse
from hub.broker import Broker, Entry, HistoryPage
from hub.delivery import cursor, resume
from hub.delivery.cursor import NOWHERE, Position
from hub.delivery.reasons import Reset
from hub.errors import BrokerUnavailable

RESET_EVENT = "hub.reset"

Writer = Callable[[bytes], Awaitable[None]]


class StreamObserver(Protocol):
    """What a stream reports as it goes (the metrics)."""

    def delivered(self, count: int) -> None: ...

    def backfilled_events(self, count: int) -> None: ...

    def reset_sent(self, reason: Reset) -> None: ...

    def slow_consumer(self) -> None: ...


class _Unobserved:
    def delivered(self, count: int) -> None:
        pass

    def backfilled_events(self, count: int) -> None:
        pass

    def reset_sent(self, reason: Reset) -> None:
        pass

    def slow_consumer(self) -> None:
        pass


class Backfill:
    """A stream's positions on its channels, the cursor made of them, and the backfill
    that moves them: the cold path, which `Subscription` extends with the live side."""

    __slots__ = (
        "_earliest",
        "_index",
        "_parts",
        "_positions",
        "_tags",
        "_unknown",
        "channels",
        "needs_sync",
        "observer",
        "sent",
    )

    def __init__(self, channels: tuple[str, ...], observer: StreamObserver | None) -> None:
        self.channels = channels
        self._index = {channel: i for i, channel in enumerate(channels)}
        self._tags = [cursor.channel_tag(channel) for channel in channels]
        # None: "from now", fixed by `take_positions` or else by the first backfill.
        self._positions: list[Position | None] = [None] * len(channels)
        self._parts = [""] * len(channels)  # each position's part of the cursor
        self._earliest: set[int] = set()
        # Channels whose position is unknown: the first backfill tells them `unknown_cursor`.
        self._unknown: set[int] = set()
        self.needs_sync = True
        self.sent = 0
        self.observer: StreamObserver = observer or _Unobserved()

    def start_from(self, last_event_id: str | None) -> None:
        """Positions from the client's last id: a cursor, `earliest`, or nothing (from now)."""
        if not last_event_id:
            return
        if last_event_id == resume.EARLIEST:
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
                    self._set(i, resume.now(await broker.history(channel, None, 0)))
        except BrokerUnavailable:
            self._unknown.update(i for i, p in enumerate(self._positions) if p is None)

    def initial_id(self) -> str | None:
        """The cursor to hand the client before any event (so a reconnect right after
        open still resumes exactly); None while a position is not settled."""
        if self._unknown or self._earliest or None in self._positions:
            return None
        return self.cursor()

    def opening(self, retry_ms: int) -> bytes:
        """The stream's first block (`hub.open` with the starting cursor)."""
        return sse.opening(retry_ms, self.initial_id())

    def history_frame(self, epoch: int, entry: Entry) -> bytes:
        """The frame of an entry read from history, once the position is on it (empty:
        nothing for this stream)."""
        return sse.frame(self.cursor(), entry.body)

    def _set(self, i: int, position: Position) -> None:
        self._positions[i] = position
        self._parts[i] = cursor.encode_part(self._tags[i], position)

    def cursor(self) -> str:
        return cursor.encode(self._parts)

    async def _backfill(self, broker: Broker, write: Writer, page_size: int) -> None:
        """Read every channel's history first, then change positions and write.

        Positions and resets are applied only once every read succeeded, so an
        outage midway loses no reset: the retry starts from the same positions.
        """
        resets: dict[Reset, list[str]] = {}
        if self._unknown:
            resets[Reset.UNKNOWN] = [self.channels[i] for i in sorted(self._unknown)]
        starts: list[Position] = []
        pages: list[HistoryPage | None] = []
        for i, channel in enumerate(self.channels):
            start, page, reason = await _read(
                broker, channel, self._positions[i], page_size, i in self._earliest
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
            if resume.plan(position, page)[1] is not None:
                # Trimmed, wiped or lost in a failover while paging: the next round tells it.
                self.needs_sync = True
                return
            frames = []
            for entry in page.entries:
                self._set(i, Position(page.epoch, entry.offset, entry.stamp))
                frame = self.history_frame(page.epoch, entry)
                if frame:
                    frames.append(frame)
            if frames:
                self.sent += len(frames)
                await write(b"".join(frames))
                self.observer.delivered(len(frames))
                self.observer.backfilled_events(len(frames))
            if len(page.entries) < page_size:
                return
            page = await broker.history(self.channels[i], page.entries[-1].offset, page_size)


async def _read(
    broker: Broker, channel: str, position: Position | None, page_size: int, earliest: bool
) -> tuple[Position, HistoryPage | None, Reset | None]:
    """Where a channel continues after `position` (None: from now), its first page to
    send (None: nothing to send), and the reset it owes."""
    if position is None:
        return resume.now(await broker.history(channel, None, 0)), None, None
    page = await broker.history(channel, position.offset, page_size)
    start, reason = resume.plan(position, page, earliest)
    if not start.epoch:
        return start, None, reason  # the channel is gone
    if start.offset < position.offset:  # it starts over: read from there
        page = await broker.history(channel, start.offset, page_size)
        start, _ = resume.plan(start, page, earliest)  # `reason` covers any gap there too
    return start, page, reason
