"""Redis restarts, wipes and lost replies while streams are open and publishers publish."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hub.broker.keys import Keys
from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import ReplyLosingProxy


@pytest.fixture
def broker_kind() -> str:
    return "redis"


async def _ready_status(hub: HubClient) -> int:
    async with hub.client.get("/readyz") as response:
        return response.status


async def _wait_ready(hub: HubClient, status: int) -> None:
    async with asyncio.timeout(30):
        while await _ready_status(hub) != status:
            await asyncio.sleep(0.05)


async def test_redis_restart_loses_nothing_acknowledged(
    make_hub: MakeHub, aof_redis: RedisServer
) -> None:
    hub = await make_hub(redis_url=aof_redis.url, heartbeat_interval=0.3)
    stream = await hub.subscribe("rita", topics=["news"])
    acknowledged: list[int] = []
    refused: list[tuple[int, str | None, Any]] = []
    refused_numbers: list[int] = []
    outage_seen = asyncio.Event()

    async def publisher() -> None:
        for n in range(400):
            async with hub.client.post(
                "/publish",
                json={"users": ["rita"] if n % 3 else [], "topics": ["news"], "data": n},
                headers={"Authorization": f"Bearer {hub.publisher_token()}"},
            ) as response:
                if response.status == 200:
                    acknowledged.append(n)
                else:
                    assert response.content_type == "application/problem+json"
                    refused_numbers.append(n)
                    refused.append(
                        (
                            response.status,
                            response.headers.get("Retry-After"),
                            await response.json(content_type=None),
                        )
                    )
                    outage_seen.set()
            await asyncio.sleep(0.005)

    received: list[int] = []

    async def reader() -> None:
        while True:
            received.append(int((await stream.next(timeout=60)).data))

    publishing = asyncio.create_task(publisher())
    reading = asyncio.create_task(reader())
    await asyncio.sleep(0.3)
    aof_redis.crash()
    await _wait_ready(hub, 503)
    await outage_seen.wait()
    pings = len(stream.comments)
    async with asyncio.timeout(30):
        while len(stream.comments) == pings:  # the stream stays open through the outage
            await asyncio.sleep(0.05)
    aof_redis.start()
    await _wait_ready(hub, 200)
    await publishing

    assert refused
    assert all(status == 503 for status, _, _ in refused)
    assert all(retry_after and retry_after.isdigit() for _, retry_after, _ in refused)
    assert all(problem["status"] == 503 for _, _, problem in refused)
    expected = Counter([*acknowledged, *(n for n in acknowledged if n % 3)])
    async with asyncio.timeout(30):
        while expected - Counter(received):  # every acknowledged delivery has arrived
            await asyncio.sleep(0.05)
    reading.cancel()
    # Every acknowledged publish exactly once per channel. A refused one may have been
    # applied all the same (Redis killed after running the script, before its reply: what
    # an Idempotency-Key retry is for); then it is whole, once per channel, never more.
    counts = Counter(received)
    for n in acknowledged:
        assert counts.pop(n) == (2 if n % 3 else 1), n
    for n, count in counts.items():
        assert n in refused_numbers, n
        assert count == (2 if n % 3 else 1), (n, count)
    await hub.send("after", users=["rita"])
    assert (await stream.next(timeout=30)).data == "after"
    stream.close()


async def test_redis_restarted_empty_tells_every_client_with_a_reset(
    make_hub: MakeHub, own_redis: RedisServer
) -> None:
    hub = await make_hub(redis_url=own_redis.url)
    open_stream = await hub.subscribe("will")
    gone = await hub.subscribe("will")
    for n in range(3):
        await hub.send(f"before{n}", users=["will"])
    await open_stream.take(3)
    await gone.take(3)
    gone.close()
    own_redis.stop()  # no persistence: everything is lost
    own_redis.start()
    await _wait_ready(hub, 200)
    await hub.send("after0", users=["will"])
    for stream in (open_stream, await hub.subscribe("will", last_event_id=gone.last_id)):
        reset = await stream.next(timeout=30)
        assert reset.event == "hub.reset"
        assert json.loads(reset.data) == {"reason": "history_trimmed", "channels": ["user:will"]}
        assert (await stream.next(timeout=30)).data == "after0"
        stream.close()


async def test_a_read_only_redis_answers_503(make_hub: MakeHub, tmp_path: Path) -> None:
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(
        tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(primary.port))
    )
    replica.start()
    try:
        hub = await make_hub(redis_url=replica.url)
        status, problem = await hub.post({"users": ["ro"], "data": 1})
        assert status == 503, problem
        assert problem["status"] == 503
    finally:
        replica.stop()
        primary.stop()


async def test_a_publish_lost_with_its_pubsub_connection_is_still_delivered(
    hub: HubClient, redis_server: RedisServer
) -> None:
    """Redis kills the pub/sub link and applies a publish in one transaction: the live
    message is gone for good, and only the resync after the reconnect can deliver it."""
    stream = await hub.subscribe("kit")
    keys = Keys(hub.settings.key_prefix)
    script = files("hub.broker").joinpath("lua", "publish.lua").read_text()
    # One channel: its live channel, one entry (see the script's ARGV).
    args: list[str | int] = [1000, 3600, 7200, 60, "", "PUBLISH", 1, keys.live("user:kit"), 1]
    args += ["message", "only by resync"]
    async with Redis.from_url(redis_server.url) as redis, redis.pipeline(transaction=True) as tx:
        tx.execute_command("CLIENT KILL TYPE pubsub")
        tx.eval(script, 2, keys.stream("user:kit"), keys.meta("user:kit"), *args)
        killed, _ = await tx.execute()
    assert killed >= 1
    assert (await stream.next(timeout=20)).data == "only by resync"
    stream.close()


async def test_a_retry_after_a_lost_reply_publishes_once(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    proxy = ReplyLosingProxy(redis_server.port)
    await proxy.start()
    try:
        hub = await make_hub(redis_url=proxy.url)
        stream = await hub.subscribe("lou")
        body = {"users": ["lou"], "data": "exactly once"}
        key = {"Idempotency-Key": "payment-1"}
        proxy.lose_next_script_reply = True
        status, problem = await hub.post(body, headers=key)
        assert status == 503, problem
        status, answer = await hub.post(body, headers=key)
        assert status == 200
        assert answer == {"ids": {"user:lou": "1-0"}}
        await hub.send("marker", users=["lou"])
        assert [e.data for e in await stream.take(2)] == ["exactly once", "marker"]
        stream.close()
    finally:
        await proxy.close()
