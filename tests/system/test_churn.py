"""Thousands of connect/disconnect cycles leave no streams, tasks or Redis subscriptions behind."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import aiohttp
import pytest
from redis.asyncio import Redis

from hub.broker.live import LiveConnection
from hub.broker.redis import RedisBroker
from hub.http.state import HUB
from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer
from tests.support.sse_client import SSEStream


@pytest.fixture
def broker_kind() -> str:
    return "redis"


async def _cycles(hub: HubClient, rounds: int, width: int = 20) -> None:
    """`rounds` times `width` streams opened (up to the opening block) and dropped.

    A plain session, not the test client, which keeps every response until it closes.
    """
    url = str(hub.client.make_url("/events"))
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> None:
            token = hub.subscriber_token(f"churn{n % 50}")
            params = [("topic", "shared"), ("topic", f"t{n % 7}")]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(url, params=params, headers=headers) as response:
                assert response.status == 200
                await SSEStream(response).wait_open()

        for r in range(rounds):
            await asyncio.gather(*(one(r * width + i) for i in range(width)))


async def _settled(hub: HubClient) -> None:
    state = hub.client.app[HUB]
    async with asyncio.timeout(30):
        while state.fanout.streams:
            await asyncio.sleep(0.02)


def _traced_mib() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 2**20


async def test_connect_disconnect_cycles_leak_nothing(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    hub = await make_hub()
    await _cycles(hub, 10)  # warm up: imports, pools, caches
    await _settled(hub)
    tasks_before = len(asyncio.all_tasks())
    # Python allocations, not RSS: the allocator's pools make RSS too noisy to judge a leak.
    tracemalloc.start()
    try:
        before = _traced_mib()
        await _cycles(hub, 150)  # 3,000 streams opened and dropped
        await _settled(hub)
        growth = _traced_mib() - before
    finally:
        tracemalloc.stop()
    assert growth < 1.5, f"{growth:.2f} MiB still held after 3,000 streams"
    broker = hub.client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    live = broker._live
    assert isinstance(live, LiveConnection)
    assert live.ledger.refs == {}
    async with Redis.from_url(redis_server.url) as redis:
        prefix = hub.settings.key_prefix
        async with asyncio.timeout(10):
            while await redis.pubsub_channels(f"{prefix}*"):
                await asyncio.sleep(0.02)
        names = [f"{prefix}{{topic:shared}}", f"{prefix}{{user:churn1}}"]
        assert all(count == 0 for _, count in await redis.pubsub_numsub(*names))
    assert len(asyncio.all_tasks()) <= tasks_before
    # And the hub still works.
    stream = await hub.subscribe("after")
    await hub.send("ok", users=["after"])
    assert (await stream.next()).data == "ok"
    stream.close()
