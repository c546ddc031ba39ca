"""Entries a failover lost are told (`hub.reset` `history_lost`), never skipped silently.

Redis replicates asynchronously: a promoted replica may lack entries the old
primary acknowledged and clients received, and new publishes then reuse their
offsets. Real losses, made with real redis-server processes: a primary, and a
replica stopped and cut off from it while it takes more, then promoted. (The
backfill's side of it, on a stand-in primary: tests/unit/delivery/test_backfill.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer
from tests.support.sse_client import Event, SSEStream, datas, lost_reset, told

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
    assert datas(await _next(stream, 5)) == ["e1", "e2", "e3", "e4", "e5"]
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
    assert told(reset) == lost_reset("user:lea")
    assert datas(rest) == ["e1", "e2", "e3", "n4", "n5", "n6"]
    await _nothing_more(hub, resumed, "lea")
    resumed.close()


async def test_a_cursor_ahead_of_the_promoted_primary_is_told(
    make_hub: MakeHub, pair: Pair
) -> None:
    hub, last_id = await _lose_two(make_hub, pair, "max")
    resumed = await hub.subscribe("max", last_event_id=last_id)
    reset, *rest = await _next(resumed, 4)
    assert told(reset) == lost_reset("user:max")
    assert datas(rest) == ["e1", "e2", "e3"]
    await _nothing_more(hub, resumed, "max")  # at offset 4 again: sent, not dropped
    resumed.close()


async def test_a_failover_that_lost_nothing_resumes_without_a_reset(
    make_hub: MakeHub, pair: Pair
) -> None:
    old = await make_hub(redis_url=pair.primary.url)
    stream = await old.subscribe("ned")
    for n in range(1, 4):
        await old.send(f"e{n}", users=["ned"])
    assert datas(await _next(stream, 3)) == ["e1", "e2", "e3"]
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
    assert datas(await _next(stream, 3)) == ["t1", "u1", "u2"]
    stream.close()
    await pair.promote()
    hub = await make_hub(redis_url=pair.replica.url, key_prefix=old.settings.key_prefix)
    await _send(hub, "n2", users=["ola"])
    await _send(hub, "t2", topics=["news"])
    resumed = await hub.subscribe("ola", topics=["news"], last_event_id=stream.last_id)
    reset, *rest = await _next(resumed, 4)
    assert told(reset) == lost_reset("user:ola")
    assert sorted(datas(rest)) == ["n2", "t2", "u1"]
    assert datas(rest).index("u1") < datas(rest).index("n2")
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
        assert datas(await _next(stream, 5)) == ["e1", "e2", "e3", "e4", "e5"]
        await pair.promote()
        switch.target = pair.replica.port
        switch.cut()
        for n in range(4, 7):
            await _send(hub, f"n{n}", users=["pia"])
        reset, *rest = await _next(stream, 7)
        assert told(reset) == lost_reset("user:pia")
        assert datas(rest) == ["e1", "e2", "e3", "n4", "n5", "n6"]
        await _nothing_more(hub, stream, "pia")
        stream.close()
    finally:
        await switch.close()
