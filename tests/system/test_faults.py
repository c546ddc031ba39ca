"""Redis faults under open streams, through the real HTTP server and a private redis-server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer


@pytest.fixture
def broker_kind() -> str:
    return "redis"


@pytest.fixture
async def hub_on_own_redis(make_hub: MakeHub, own_redis: RedisServer) -> HubClient:
    return await make_hub(redis_url=own_redis.url)


async def test_pubsub_killed_mid_stream_loses_and_duplicates_nothing(
    hub_on_own_redis: HubClient, own_redis: RedisServer
) -> None:
    hub = hub_on_own_redis
    stream = await hub.subscribe("kai", topics=["feed"])
    total = 300

    async def publisher() -> None:
        live = f"{hub.settings.key_prefix}{{topic:feed}}"
        async with Redis.from_url(own_redis.url) as redis:
            for n in range(total):
                await hub.send(str(n), users=["kai"] if n % 2 else [], topics=["feed"])
                if n in (60, 150, 240):
                    # Kill only once the hub has subscribed again after the last kill.
                    async with asyncio.timeout(10):
                        while (await redis.pubsub_numsub(live))[0][1] < 1:
                            await asyncio.sleep(0.01)
                    killed = await redis.execute_command(  # type: ignore[no-untyped-call]
                        "CLIENT KILL TYPE pubsub"
                    )
                    assert killed >= 1

    publishing = asyncio.create_task(publisher())
    received: list[tuple[str, int]] = []
    expected = total + total // 2
    while len(received) < expected:
        if publishing.done():
            publishing.result()  # a failed publisher fails the test at once
        event = await stream.next(timeout=20)
        received.append((event.event, int(event.data)))
    await publishing
    numbers = [n for _, n in received]
    odd = [n for n in numbers if n % 2]
    # Every publish once on topic:feed, every odd one once more on user:kai, in channel order.
    assert sorted(numbers) == sorted([*range(total), *range(1, total, 2)])
    assert [n for n in numbers if n % 2 == 0] == list(range(0, total, 2))
    assert sorted(odd) == [n for n in range(1, total, 2) for _ in (0, 1)]
    await hub.send("tail", users=["kai"])
    assert (await stream.next()).data == "tail"
    stream.close()


async def test_redis_wiped_under_an_open_stream_gives_a_reset_then_new_events(
    hub_on_own_redis: HubClient, own_redis: RedisServer
) -> None:
    hub = hub_on_own_redis
    stream = await hub.subscribe("wendy")
    for n in range(3):
        await hub.send(f"old{n}", users=["wendy"])
    assert [e.data for e in await stream.take(3)] == ["old0", "old1", "old2"]
    async with Redis.from_url(own_redis.url) as redis:
        await redis.flushall()
    await hub.send("new0", users=["wendy"])
    await hub.send("new1", users=["wendy"])
    reset = await stream.next()
    assert reset.event == "hub.reset"
    assert json.loads(reset.data) == {"reason": "history_trimmed", "channels": ["user:wendy"]}
    assert [e.data for e in await stream.take(2)] == ["new0", "new1"]
    last = stream.last_id
    stream.close()
    resumed = await hub.subscribe("wendy", last_event_id=last)
    await hub.send("new2", users=["wendy"])
    event = await resumed.next()
    assert (event.event, event.data) == ("message", "new2")
    resumed.close()


async def test_slow_consumer_is_closed_without_stalling_others(make_hub: MakeHub) -> None:
    hub = await make_hub(stream_queue_size=50, history_max_len=5000)
    # Enough bytes to fill the kernel's socket buffers on both sides (several MB).
    payload = "x" * 8000
    slow = await hub.subscribe("slow", topics=["firehose"])
    fast = await hub.subscribe("fast", topics=["firehose"])
    first_slow = None
    sent = 0
    received_fast = 0

    async def fast_reader() -> None:
        nonlocal received_fast
        while received_fast < 2000:
            await fast.next(timeout=20)
            received_fast += 1

    reader = asyncio.create_task(fast_reader())
    for n in range(2000):
        await hub.send({"n": n, "pad": payload}, topics=["firehose"])
        sent += 1
        if n == 0:
            first_slow = await slow.next()
    await reader
    assert received_fast == sent
    # The slow stream was cut; what it got is a prefix, and resuming delivers the rest exactly.
    got: list[Any] = []
    try:
        while True:
            got.append(json.loads((await slow.next(timeout=20)).data)["n"])
    except EOFError:
        pass
    assert first_slow is not None
    assert slow.aborted
    assert got == list(range(1, len(got) + 1))
    assert len(got) < 1999
    resumed = await hub.subscribe("slow", topics=["firehose"], last_event_id=slow.last_id)
    rest = [json.loads(e.data)["n"] for e in await resumed.take(1999 - len(got))]
    assert rest == list(range(len(got) + 1, 2000))
    resumed.close()
    fast.close()


async def test_two_hubs_on_one_redis_and_a_stream_moving_between_them(
    make_hub: MakeHub, own_redis: RedisServer
) -> None:
    one = await make_hub(redis_url=own_redis.url, key_prefix="shared:")
    two = await make_hub(redis_url=own_redis.url, key_prefix="shared:")
    stream = await two.subscribe("moe")
    await one.send("via one", users=["moe"])
    assert (await stream.next()).data == "via one"
    stream.close()
    await one.send("missed 1", users=["moe"])
    await two.send("missed 2", users=["moe"])
    moved = await one.subscribe("moe", last_event_id=stream.last_id)
    assert [e.data for e in await moved.take(2)] == ["missed 1", "missed 2"]
    await two.send("live", users=["moe"])
    assert (await moved.next()).data == "live"
    moved.close()
