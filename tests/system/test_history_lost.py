"""Entries a failover lost are told (`hub.reset` `history_lost`), never skipped silently.

Redis replicates asynchronously: a promoted replica may lack entries the old
primary acknowledged and clients received, and new publishes then reuse their
offsets. First the plan on its own (a stand-in primary that follows history.lua's
rules), then real losses made with real redis-server processes: a primary, and a
replica stopped and cut off from it while it takes more, then promoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hub.broker import Broker, Entry, HistoryPage, Idempotency, LiveSink
from hub.delivery.cursor import Position, channel_tag, decode, encode_part
from hub.delivery.resume import EARLIEST
from hub.delivery.subscription import Subscription
from hub.message import Message
from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer
from tests.support.sse_client import Event, SSEStream

EPOCH = 7

# -- the plan, on a stand-in primary ---------------------------------------------------------


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


def _datas(events: list[Event]) -> list[str]:
    return [e.data for e in events]


def _reset(*channels: str) -> tuple[str, dict[str, Any]]:
    return ("hub.reset", {"reason": "history_lost", "channels": list(channels)})


def _told(event: Event) -> tuple[str, dict[str, Any]]:
    return (event.event, json.loads(event.data))


async def test_a_lost_entry_whose_offset_was_reused_is_told_then_all_retained_follows() -> None:
    primary = Primary()
    for n in range(1, 6):
        primary.write("user:a", f"a{n}")
    _, seen = await _backfill(primary, ("user:a",), EARLIEST)
    assert _datas(seen) == ["a1", "a2", "a3", "a4", "a5"]
    primary.fail_over("user:a", 2)
    primary.write("user:a", "n4", "n5", "n6")
    sub, events = await _backfill(primary, ("user:a",), seen[-1].id)
    assert _told(events[0]) == _reset("user:a")
    assert _datas(events[1:]) == ["a1", "a2", "a3", "n4", "n5", "n6"]
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
    assert _told(events[0]) == _reset("user:a")
    assert _datas(events[1:]) == ["a1", "a2", "a3"]


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
    assert _datas(events) == ["a3"]
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
    assert _told(events[0]) == _reset("user:a")
    assert _datas(events[1:]) == ["n4", "n5", "n6"]


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
    assert _datas(events[:4]) == ["a1", "a2", "a3", "a4"]
    assert _told(events[4]) == _reset("user:a")
    assert _datas(events[5:]) == ["a1", "a2", "a3", "n4", "n5"]


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
    assert _told(events[0]) == _reset("user:a")
    assert sorted(_datas(events[1:])) == ["a1", "n2", "t2"]


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


# -- real losses on real redis-server processes -----------------------------------------------


@pytest.fixture
def broker_kind() -> str:
    return "redis"


class Pair:
    """A primary and its replica. `partition` stops the replica (SIGSTOP) and has the
    primary drop its link: what the primary takes from then on never reaches the replica.
    (SIGSTOP alone would not do: what the primary wrote to the link before it died waits
    in the replica's socket buffer and is applied on SIGCONT.)"""

    def __init__(self, directory: Path) -> None:
        self.primary = RedisServer(directory / "primary")
        self.primary.start()
        self.replica = RedisServer(
            directory / "replica", extra=("--replicaof", "127.0.0.1", str(self.primary.port))
        )
        self.replica.start()
        self.paused = False

    def _signal(self, sig: signal.Signals) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, sig)
        self.paused = sig == signal.SIGSTOP

    async def synced(self) -> None:
        """Until the replica holds everything the primary acknowledged."""
        async with Redis.from_url(self.primary.url) as redis, asyncio.timeout(20):
            while await redis.wait(1, 1000) < 1:
                await asyncio.sleep(0.05)

    async def partition(self) -> None:
        self._signal(signal.SIGSTOP)
        async with Redis.from_url(self.primary.url) as redis:
            assert await redis.client_kill_filter(_type="replica") == 1

    async def promote(self) -> None:
        """The primary dies; the replica, behind or not, becomes the primary."""
        self.primary.crash()
        if self.paused:
            self._signal(signal.SIGCONT)
        async with Redis.from_url(self.replica.url) as redis:
            await redis.replicaof("NO", "ONE")

    def stop(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    pair = Pair(tmp_path)
    try:
        await pair.synced()
        yield pair
    finally:
        pair.stop()


async def _send(hub: HubClient, data: str, **targets: list[str]) -> None:
    """Publishes, retrying while the hub's Redis is not taking writes yet."""
    async with asyncio.timeout(30):
        while True:
            status, answer = await hub.post({"data": data, **targets})
            if status == 200:
                return
            assert status == 503, answer
            await asyncio.sleep(0.1)


async def _next(stream: SSEStream, count: int) -> list[Event]:
    return await stream.take(count, timeout=30)


async def _nothing_more(hub: HubClient, stream: SSEStream, user: str) -> None:
    """A marker published now is the very next event: nothing was sent twice or held."""
    await _send(hub, "marker", users=[user])
    assert (await stream.next(timeout=30)).data == "marker"


async def _lose_two(make_hub: MakeHub, pair: Pair, user: str) -> tuple[HubClient, str]:
    """e1..e3 replicated, e4 and e5 acknowledged by the primary only and received by a
    subscriber; then the primary dies and its replica is promoted. Returns a hub on the
    new primary and the subscriber's last id."""
    old = await make_hub(redis_url=pair.primary.url)
    stream = await old.subscribe(user)
    for n in range(1, 4):
        await old.send(f"e{n}", users=[user])
    await pair.synced()
    await pair.partition()
    for n in range(4, 6):
        await old.send(f"e{n}", users=[user])
    assert _datas(await _next(stream, 5)) == ["e1", "e2", "e3", "e4", "e5"]
    stream.close()
    await pair.promote()
    new = await make_hub(redis_url=pair.replica.url, key_prefix=old.settings.key_prefix)
    return new, stream.last_id


async def test_lost_entries_whose_offsets_were_reused_are_told(
    make_hub: MakeHub, pair: Pair
) -> None:
    hub, last_id = await _lose_two(make_hub, pair, "lea")
    for n in range(4, 7):
        await _send(hub, f"n{n}", users=["lea"])
    resumed = await hub.subscribe("lea", last_event_id=last_id)
    reset, *rest = await _next(resumed, 7)
    assert _told(reset) == _reset("user:lea")
    assert _datas(rest) == ["e1", "e2", "e3", "n4", "n5", "n6"]
    await _nothing_more(hub, resumed, "lea")
    resumed.close()


async def test_a_cursor_ahead_of_the_promoted_primary_is_told(
    make_hub: MakeHub, pair: Pair
) -> None:
    hub, last_id = await _lose_two(make_hub, pair, "max")
    resumed = await hub.subscribe("max", last_event_id=last_id)
    reset, *rest = await _next(resumed, 4)
    assert _told(reset) == _reset("user:max")
    assert _datas(rest) == ["e1", "e2", "e3"]
    await _nothing_more(hub, resumed, "max")  # at offset 4 again: sent, not dropped
    resumed.close()


async def test_a_failover_that_lost_nothing_resumes_without_a_reset(
    make_hub: MakeHub, pair: Pair
) -> None:
    old = await make_hub(redis_url=pair.primary.url)
    stream = await old.subscribe("ned")
    for n in range(1, 4):
        await old.send(f"e{n}", users=["ned"])
    assert _datas(await _next(stream, 3)) == ["e1", "e2", "e3"]
    stream.close()
    await pair.synced()
    await pair.promote()
    hub = await make_hub(redis_url=pair.replica.url, key_prefix=old.settings.key_prefix)
    at_top = await hub.subscribe("ned", last_event_id=stream.last_id)
    await _send(hub, "n4", users=["ned"])
    await _send(hub, "n5", users=["ned"])
    behind = await hub.subscribe("ned", last_event_id=stream.last_id)
    for resumed in (at_top, behind):
        assert [(e.event, e.data) for e in await _next(resumed, 2)] == [
            ("message", "n4"),
            ("message", "n5"),
        ]
        await _nothing_more(hub, resumed, "ned")
        resumed.close()


async def test_only_the_channel_that_lost_entries_is_told(make_hub: MakeHub, pair: Pair) -> None:
    old = await make_hub(redis_url=pair.primary.url)
    stream = await old.subscribe("ola", topics=["news"])
    await old.send("t1", topics=["news"])
    await old.send("u1", users=["ola"])
    await pair.synced()
    await pair.partition()
    await old.send("u2", users=["ola"])  # acknowledged, received, then lost
    assert _datas(await _next(stream, 3)) == ["t1", "u1", "u2"]
    stream.close()
    await pair.promote()
    hub = await make_hub(redis_url=pair.replica.url, key_prefix=old.settings.key_prefix)
    await _send(hub, "n2", users=["ola"])
    await _send(hub, "t2", topics=["news"])
    resumed = await hub.subscribe("ola", topics=["news"], last_event_id=stream.last_id)
    reset, *rest = await _next(resumed, 4)
    assert _told(reset) == _reset("user:ola")
    assert sorted(_datas(rest)) == ["n2", "t2", "u1"]
    assert _datas(rest).index("u1") < _datas(rest).index("n2")
    await _nothing_more(hub, resumed, "ola")
    resumed.close()


# -- a stream that stays open while its hub's Redis is replaced -------------------------------


class Switch:
    """A TCP forwarder whose target can be changed; `cut` drops every connection, as a
    node that dies does."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


async def test_an_open_stream_is_told_when_its_hub_fails_over(
    make_hub: MakeHub, pair: Pair
) -> None:
    switch = Switch(pair.primary.port)
    await switch.start()
    try:
        hub = await make_hub(redis_url=switch.url, heartbeat_interval=0.5)
        stream = await hub.subscribe("pia")
        for n in range(1, 4):
            await hub.send(f"e{n}", users=["pia"])
        await pair.synced()
        await pair.partition()
        for n in range(4, 6):
            await hub.send(f"e{n}", users=["pia"])
        assert _datas(await _next(stream, 5)) == ["e1", "e2", "e3", "e4", "e5"]
        await pair.promote()
        switch.target = pair.replica.port
        switch.cut()
        for n in range(4, 7):
            await _send(hub, f"n{n}", users=["pia"])
        reset, *rest = await _next(stream, 7)
        assert _told(reset) == _reset("user:pia")
        assert _datas(rest) == ["e1", "e2", "e3", "n4", "n5", "n6"]
        await _nothing_more(hub, stream, "pia")
        stream.close()
    finally:
        await switch.close()
