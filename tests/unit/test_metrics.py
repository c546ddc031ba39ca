"""GET /metrics, parsed with the Prometheus text parser: the counters move as the hub works."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.support.hubs import HubClient, MakeHub
from tests.support.redis_server import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _samples(hub: HubClient) -> Samples:
    async with hub.client.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move(hub: HubClient) -> None:
    stream = await hub.subscribe("mo", topics=["m"])
    await hub.send("one", users=["mo"])
    await hub.send("two", topics=["m"])
    await stream.take(2)
    status, _ = await hub.post({"users": ["bad user"], "data": 1})
    assert status == 400
    samples = await _samples(hub)
    assert _value(samples, "hub_open_streams") == 1
    assert _value(samples, "hub_publishes_total", outcome="ok") == 2
    assert _value(samples, "hub_publishes_total", outcome="rejected") == 1
    assert _value(samples, "hub_publish_latency_seconds_count") == 2
    assert _value(samples, "hub_events_delivered_total") == 2
    last = stream.last_id
    stream.close()
    await hub.send("three", users=["mo"])
    resumed = await hub.subscribe("mo", topics=["m"], last_event_id=last)
    assert (await resumed.next()).data == "three"
    resumed.close()
    garbage = await hub.subscribe("mo", last_event_id="garbage")
    assert (await garbage.next()).event == "hub.reset"
    garbage.close()
    async with asyncio.timeout(10):
        while _value(samples := await _samples(hub), "hub_open_streams") != 0:
            await asyncio.sleep(0.02)
    assert _value(samples, "hub_backfilled_events_total") == 1
    assert _value(samples, "hub_events_delivered_total") == 3
    assert _value(samples, "hub_resets_sent_total", reason="unknown_cursor") == 1


async def test_slow_consumers_and_broker_reconnects_are_counted(
    make_hub: MakeHub, own_redis: RedisServer, broker_kind: str
) -> None:
    if broker_kind == "memory":
        hub = await make_hub(stream_queue_size=5)
    else:
        hub = await make_hub(stream_queue_size=5, redis_url=own_redis.url)
    stalled = await hub.subscribe("stall")  # and never read
    async with asyncio.timeout(30):
        while _value(await _samples(hub), "hub_slow_consumers_dropped_total") != 1:
            status, _ = await hub.post([{"users": ["stall"], "data": "x" * 60000}] * 10)
            assert status == 200
    stalled.close()
    if broker_kind == "redis":
        listening = await hub.subscribe("listener")  # pub/sub is only killable while subscribed
        async with Redis.from_url(own_redis.url) as redis:
            await redis.execute_command("CLIENT KILL TYPE pubsub")  # type: ignore[no-untyped-call]
        async with asyncio.timeout(10):
            while _value(await _samples(hub), "hub_broker_reconnects_total") < 1:
                await asyncio.sleep(0.02)
        listening.close()


async def test_process_metrics(hub: HubClient) -> None:
    """The process's own CPU, memory and open file descriptors (prometheus-client's process
    collector, from /proc), without a pid label: one process, one series each."""
    samples = await _samples(hub)
    assert _value(samples, "process_resident_memory_bytes") > 0
    assert _value(samples, "process_open_fds") > 0
    assert _value(samples, "process_max_fds") > 0
    assert _value(samples, "process_cpu_seconds_total") > 0
    assert _value(samples, "process_start_time_seconds") > 0
