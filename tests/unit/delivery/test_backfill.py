"""The backfill on a stand-in primary that follows history.lua's rules: entries a
failover lost are told (`hub.reset` `history_lost`), never skipped silently, and
so is history trimmed while a backfill pages through it. (Real losses on real
redis-server processes: tests/system/test_history_lost.py.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hub.broker import Broker, Entry, HistoryPage, Idempotency, LiveSink
from hub.delivery.cursor import Position, channel_tag, decode, encode_part
from hub.delivery.resume import EARLIEST
from hub.delivery.subscription import Subscription
from hub.message import Message
from tests.support.sse_client import Event, datas, lost_reset, told

EPOCH = 7


@dataclass
class _Channel:
    top: int = 0
    stamp: int = 0  # the top's stamp, as the meta hash keeps it
    rows: list[tuple[Entry, int]] = field(default_factory=list)  # entry, its predecessor's stamp


class Primary(Broker):
    """Channels as a Redis primary holds them, read by history.lua's rules. `fail_over`
    drops the newest entries, as promoting a replica that was behind does."""

    def __init__(self) -> None:
        self.channels: dict[str, _Channel] = {}
        self._stamps = itertools.count(1000)
        self.before_read: Callable[[int | None], None] | None = None

    def write(self, channel: str, *data: str) -> None:
        """One publish script call: its entries share one stamp."""
        state = self.channels.setdefault(channel, _Channel())
        stamp = next(self._stamps)
        for text in data:
            state.top += 1
            state.rows.append((Entry.create(state.top, "message", text, stamp), state.stamp))
            state.stamp = stamp

    def fail_over(self, channel: str, lost: int) -> None:
        state = self.channels[channel]
        del state.rows[len(state.rows) - lost :]
        state.top -= lost
        state.stamp = state.rows[-1][0].stamp if state.rows else 0

    def trim(self, channel: str, count: int) -> None:
        del self.channels[channel].rows[:count]

    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        if self.before_read is not None:
            self.before_read(after)
        state = self.channels.get(channel)
        if state is None:
            return HistoryPage(0, 0, [])
        if after is None:
            return HistoryPage(EPOCH, state.top, [], state.stamp or None)
        kept = {entry.offset: (entry, previous) for entry, previous in state.rows}
        anchor = None
        if after and after in kept:
            anchor = kept[after][0].stamp
        elif after and after + 1 in kept:
            anchor = kept[after + 1][1]
        elif after and after == state.top:
            anchor = state.stamp
        entries = [entry for entry, _ in state.rows if entry.offset > after][:limit]
        return HistoryPage(EPOCH, state.top, entries, anchor or None)

    async def start(self, sink: LiveSink) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(
        self, messages: Sequence[Message], idempotency: Idempotency | None = None
    ) -> list[dict[str, str]]:
        raise NotImplementedError

    async def recorded(self, key: str, channel: str) -> str | None:
        raise NotImplementedError

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        raise NotImplementedError

    def unsubscribe(self, channel: str) -> None:
        pass

    async def ready(self) -> bool:
        return True


async def _backfill(
    broker: Broker, channels: tuple[str, ...], last_id: str, page_size: int = 100
) -> tuple[Subscription, list[Event]]:
    sub = Subscription(channels, 1000)
    sub.start_from(last_id)
    written = bytearray()

    async def write(data: bytes) -> None:
        written.extend(data)

    await sub.sync(broker, write, page_size)
    events = []
    for frame in bytes(written).decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append(Event(fields["id"], fields["event"], fields["data"]))
    return sub, events


async def test_a_lost_entry_whose_offset_was_reused_is_told_then_all_retained_follows() -> None:
    primary = Primary()
    for n in range(1, 6):
        primary.write("user:a", f"a{n}")
    _, seen = await _backfill(primary, ("user:a",), EARLIEST)
    assert datas(seen) == ["a1", "a2", "a3", "a4", "a5"]
    primary.fail_over("user:a", 2)
    primary.write("user:a", "n4", "n5", "n6")
    sub, events = await _backfill(primary, ("user:a",), seen[-1].id)
    assert told(events[0]) == lost_reset("user:a")
    assert datas(events[1:]) == ["a1", "a2", "a3", "n4", "n5", "n6"]
    stamp = primary.channels["user:a"].stamp
    assert decode(events[-1].id)[channel_tag("user:a")] == Position(EPOCH, 6, stamp)
    assert sub.cursor() == events[-1].id


async def test_a_cursor_past_the_top_is_history_lost() -> None:
    primary = Primary()
    for n in range(1, 6):
        primary.write("user:a", f"a{n}")
    _, seen = await _backfill(primary, ("user:a",), EARLIEST)
    primary.fail_over("user:a", 2)
    _, events = await _backfill(primary, ("user:a",), seen[-1].id)
    assert told(events[0]) == lost_reset("user:a")
    assert datas(events[1:]) == ["a1", "a2", "a3"]


async def test_nothing_lost_means_no_reset_and_an_old_cursor_gains_its_stamp() -> None:
    primary = Primary()
    primary.write("user:a", "a1", "a2")
    _, seen = await _backfill(primary, ("user:a",), EARLIEST)
    primary.write("user:a", "a3")
    _, events = await _backfill(primary, ("user:a",), seen[-1].id)
    assert [(e.event, e.data) for e in events] == [("message", "a3")]
    # Cursors made before stamps existed: not checked, and stamped from here on.
    tag = channel_tag("user:a")
    _, events = await _backfill(primary, ("user:a",), encode_part(tag, Position(EPOCH, 2)))
    assert datas(events) == ["a3"]
    sub, events = await _backfill(primary, ("user:a",), encode_part(tag, Position(EPOCH, 3)))
    assert events == []
    assert decode(sub.cursor())[tag] == Position(EPOCH, 3, primary.channels["user:a"].stamp)


async def test_the_entry_after_a_trimmed_one_still_tells_the_loss() -> None:
    primary = Primary()
    for n in range(1, 4):
        primary.write("user:a", f"a{n}")
    _, seen = await _backfill(primary, ("user:a",), EARLIEST)
    primary.fail_over("user:a", 1)
    for n in range(3, 7):
        primary.write("user:a", f"n{n}")
    primary.trim("user:a", 3)  # a1, a2 and n3 (at the cursor's offset) are gone
    _, events = await _backfill(primary, ("user:a",), seen[-1].id)
    assert told(events[0]) == lost_reset("user:a")
    assert datas(events[1:]) == ["n4", "n5", "n6"]


async def test_a_failover_between_pages_is_told_in_the_next_round() -> None:
    primary = Primary()
    for n in range(1, 6):
        primary.write("user:a", f"a{n}")

    def fail_over_once(after: int | None) -> None:
        if after == 4:  # the third page: a4 (just sent) and a5 are gone, offsets reused
            primary.before_read = None
            primary.fail_over("user:a", 2)
            primary.write("user:a", "n4", "n5")

    primary.before_read = fail_over_once
    _, events = await _backfill(primary, ("user:a",), EARLIEST, page_size=2)
    assert datas(events[:4]) == ["a1", "a2", "a3", "a4"]
    assert told(events[4]) == lost_reset("user:a")
    assert datas(events[5:]) == ["a1", "a2", "a3", "n4", "n5"]


async def test_a_failover_that_lost_only_unsent_entries_is_no_gap() -> None:
    primary = Primary()
    for n in range(1, 6):
        primary.write("user:a", f"a{n}")

    def fail_over_once(after: int | None) -> None:
        if after == 3:  # a4 and a5 were never sent: nothing the client had is gone
            primary.before_read = None
            primary.fail_over("user:a", 2)
            primary.write("user:a", "n4", "n5")

    primary.before_read = fail_over_once
    _, events = await _backfill(primary, ("user:a",), EARLIEST, page_size=3)
    assert [(e.event, e.data) for e in events] == [
        ("message", data) for data in ("a1", "a2", "a3", "n4", "n5")
    ]


async def test_only_the_channel_that_lost_entries_is_listed() -> None:
    primary = Primary()
    channels = ("user:a", "topic:t")
    primary.write("user:a", "a1")
    primary.write("topic:t", "t1")
    primary.write("user:a", "a2")
    _, seen = await _backfill(primary, channels, EARLIEST)
    primary.fail_over("user:a", 1)
    primary.write("user:a", "n2")
    primary.write("topic:t", "t2")
    _, events = await _backfill(primary, channels, seen[-1].id)
    assert told(events[0]) == lost_reset("user:a")
    assert sorted(datas(events[1:])) == ["a1", "n2", "t2"]


async def test_positions_from_now_and_from_live_entries_carry_stamps() -> None:
    primary = Primary()
    primary.write("user:a", "a1")
    sub = Subscription(("user:a",), 100)
    await sub.take_positions(primary)
    tag, top = channel_tag("user:a"), primary.channels["user:a"].stamp
    assert sub.initial_id() == encode_part(tag, Position(EPOCH, 1, top))
    sub.settle(sub.resyncs)
    sub.offer("user:a", EPOCH, Entry.create(2, "message", "a2", 36**6 - 1))
    assert sub.cursor() == encode_part(tag, Position(EPOCH, 2, 36**6 - 1))


async def test_a_trim_between_pages_is_told_in_the_next_round() -> None:
    primary = Primary()
    for n in range(1, 7):
        primary.write("user:a", f"a{n}")

    def trim_once(after: int | None) -> None:
        if after == 2:  # a1 and a2 sent; a3 and a4 trimmed before they are read
            primary.before_read = None
            primary.trim("user:a", 4)

    primary.before_read = trim_once
    _, events = await _backfill(primary, ("user:a",), EARLIEST, page_size=2)
    assert datas(events[:2]) == ["a1", "a2"]
    assert told(events[2]) == ("hub.reset", {"reason": "history_trimmed", "channels": ["user:a"]})
    assert datas(events[3:]) == ["a5", "a6"]


async def test_history_emptied_between_pages_is_told_and_the_cursor_moves_to_the_top() -> None:
    primary = Primary()
    for n in range(1, 7):
        primary.write("user:a", f"a{n}")

    def trim_once(after: int | None) -> None:
        if after == 2:  # every entry after a2 is gone, though the top is still a6
            primary.before_read = None
            primary.trim("user:a", 6)

    primary.before_read = trim_once
    sub, events = await _backfill(primary, ("user:a",), EARLIEST, page_size=2)
    assert datas(events[:2]) == ["a1", "a2"]
    assert [told(e) for e in events[2:]] == [
        ("hub.reset", {"reason": "history_trimmed", "channels": ["user:a"]})
    ]
    assert decode(sub.cursor())[channel_tag("user:a")] == Position(EPOCH, 6)
