"""One contract, every broker: in memory, and Redis as one node, a Cluster and behind Sentinel
(real redis-server processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.broker import Broker, Idempotency, create_broker
from hub.config import Settings
from hub.errors import IdempotencyConflict
from tests.support.hubs import EVERY_BROKER
from tests.support.redis_cluster import RedisClusterNodes
from tests.support.redis_sentinel import SentinelSetup
from tests.support.redis_server import RedisServer
from tests.support.sinks import RecordingSink, message


@pytest.fixture(params=EVERY_BROKER)
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sink_and_broker(
    broker_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RecordingSink, Broker]]:
    settings = dataclasses.replace(
        Settings(), history_max_len=10, key_prefix=f"c{uuid.uuid4().hex[:8]}:"
    )
    if broker_kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        settings = dataclasses.replace(settings, redis_url=server.url)
    elif broker_kind == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("shared_cluster")
        settings = dataclasses.replace(settings, redis_url=cluster.seed_url)
    elif broker_kind == "sentinel":
        sentinel: SentinelSetup = request.getfixturevalue("shared_sentinel")
        settings = dataclasses.replace(settings, redis_url=sentinel.url)
    broker = create_broker(settings)
    sink = RecordingSink()
    await broker.start(sink)
    yield sink, broker
    await broker.close()


async def test_offsets_are_contiguous_per_channel(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    results = await broker.publish([message("user:a", "topic:t"), message("user:a")])
    assert results == [{"user:a": "1-0", "topic:t": "1-0"}, {"user:a": "2-0"}]
    page = await broker.history("user:a", 0, 100)
    assert [e.offset for e in page.entries] == [1, 2]
    assert page.top == 2
    assert page.epoch > 0


async def test_history_after_limit_and_position_only(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    await broker.publish([message("user:h", data=f"d{n}", event="ev") for n in range(5)])
    page = await broker.history("user:h", 2, 2)
    assert [(e.offset, e.data, e.event) for e in page.entries] == [(3, "d2", "ev"), (4, "d3", "ev")]
    assert page.entries[0].body == b"event: ev\ndata: d2\n\n"
    meta = await broker.history("user:h", None, 100)
    assert (meta.epoch, meta.top, meta.entries) == (page.epoch, 5, [])
    missing = await broker.history("user:nobody", 0, 100)
    assert (missing.epoch, missing.top, missing.entries) == (0, 0, [])


async def test_history_gives_back_data_with_any_line_ends(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    texts = ["a\r\nb\rc\nd", "", "\n", " lead", "日本語"]
    await broker.publish([message("user:l", data=text) for text in texts])
    entries = (await broker.history("user:l", 0, 10)).entries
    assert [entry.data for entry in entries] == texts
    assert entries[0].body == b"event: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


async def test_trimmed_history_keeps_the_newest_contiguously(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    await broker.publish([message("user:t", data=str(n)) for n in range(1, 301)])
    page = await broker.history("user:t", 0, 1000)
    offsets = [e.offset for e in page.entries]
    assert offsets[0] > 1
    assert offsets[-1] == 300 == page.top
    assert offsets == list(range(offsets[0], 301))
    assert len(offsets) >= 10


async def test_live_entries_after_subscribe(sink_and_broker: Any) -> None:
    sink, broker = sink_and_broker
    await broker.subscribe("user:live")
    await broker.publish([message("user:live", data="hi\nthere", event="greet")])
    await sink.wait_for(1)
    channel, epoch, entry = sink.delivered[-1]
    page = await broker.history("user:live", 0, 10)
    assert (channel, epoch) == ("user:live", page.epoch)
    assert entry == page.entries[0]
    assert entry.body == page.entries[0].body
    broker.unsubscribe("user:live")


async def test_idempotency_key(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    key = Idempotency(f"idem:{uuid.uuid4().hex}", "fp1")
    first = await broker.publish([message("user:i", "topic:j")], key)
    again = await broker.publish([message("user:i", "topic:j")], key)
    assert first == again == [{"user:i": "1-0", "topic:j": "1-0"}]
    with pytest.raises(IdempotencyConflict):
        await broker.publish([message("user:i")], Idempotency(key.key, "fp2"))
    assert (await broker.history("user:i", None, 0)).top == 1


async def test_ready(sink_and_broker: Any) -> None:
    _, broker = sink_and_broker
    async with asyncio.timeout(10):
        while not await broker.ready():
            await asyncio.sleep(0.05)
