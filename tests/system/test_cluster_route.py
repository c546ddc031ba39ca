"""The Cluster route on a real Redis Cluster: found from one node, following a stale slot
map, and a message to several shards that one shard could not take, retried."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import uuid
from collections.abc import Collection
from pathlib import Path

import pytest

from hub.broker.cluster import ClusterRoute
from hub.broker.redis import RedisBroker
from hub.config import Settings
from hub.errors import ConfigError
from hub.http.state import HUB
from hub.message import Message
from tests.support.hubs import MakeHub
from tests.support.redis_cluster import RedisClusterNodes, admin, call
from tests.support.tls_certs import make_certificates
from tests.support.topologies import started

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # the hubs here are pointed at a cluster by their tests


class _Sink:
    """Keeps what each resync named (None: every channel)."""

    def __init__(self) -> None:
        self.resyncs: list[set[str] | None] = []

    def deliver(self, *_: object) -> None:
        pass

    def resync(self, channels: Collection[str] | None = None) -> None:
        self.resyncs.append(None if channels is None else set(channels))


def _broker(url: str) -> RedisBroker:
    return RedisBroker(dataclasses.replace(Settings(), redis_url=url, key_prefix="route:"))


async def test_one_node_that_says_it_is_in_a_cluster_is_taken_as_a_seed(
    shared_cluster: RedisClusterNodes,
) -> None:
    broker = _broker(f"redis://127.0.0.1:{shared_cluster.nodes[0].port}")
    await broker.start(_Sink())
    try:
        assert isinstance(broker.route, ClusterRoute)
        users = [f"seed{i}" for i in range(12)]  # on every shard
        channels = tuple(f"user:{u}" for u in users)
        [ids] = await broker.publish([Message(channels, "message", "x")])
        assert ids == dict.fromkeys(channels, "1-0")
        assert await broker.ready()
    finally:
        await broker.close()


async def test_a_cluster_url_naming_a_database_is_refused(
    shared_cluster: RedisClusterNodes,
) -> None:
    broker = _broker(f"redis://127.0.0.1:{shared_cluster.nodes[0].port}/2")
    with pytest.raises(ConfigError, match="only database 0"):
        await broker.start(_Sink())
    await broker.close()


async def test_a_stale_slot_map_follows_moved(shared_cluster: RedisClusterNodes) -> None:
    broker = _broker(shared_cluster.seed_url)
    await broker.start(_Sink())
    try:
        route = broker.route
        assert isinstance(route, ClusterRoute)
        key = broker.keys.stream("user:stale")
        owner = route.owner(key)
        wrong = next(a for a in route.primaries if a != owner)
        route._slots = [wrong] * len(route._slots)  # every slot points at one node
        [ids] = await broker.publish([Message(("user:stale",), "message", "x")])
        assert ids == {"user:stale": "1-0"}
        assert route.owner(key) == owner, "MOVED put the slot right"
    finally:
        await broker.close()


async def test_a_lost_live_link_resyncs_only_the_streams_on_its_node(
    shared_cluster: RedisClusterNodes,
) -> None:
    """Only the channels whose node dropped its pub/sub link may have missed anything: the
    streams on other nodes keep theirs, and do not re-read history."""
    broker = _broker(shared_cluster.seed_url)
    sink = _Sink()
    await broker.start(sink)
    try:
        tag = uuid.uuid4().hex[:6]
        channels = [f"user:{tag}{i}" for i in range(12)]  # on every shard
        for channel in channels:
            await broker.subscribe(channel)
        by_node: dict[int, set[str]] = {}
        for channel in channels:
            node = shared_cluster.primary_for(broker.keys.live(channel))
            by_node.setdefault(node.port, set()).add(channel)
        assert len(by_node) > 1
        port, cut = next(iter(by_node.items()))
        before = len(sink.resyncs)
        with admin(port) as client:
            assert call(client, "CLIENT", "KILL", "TYPE", "pubsub") >= 1
        async with asyncio.timeout(20):
            while len(sink.resyncs) == before:
                await asyncio.sleep(0.02)
        assert sink.resyncs[before:] == [cut], f"only {port}'s channels resync"
    finally:
        await broker.close()


async def test_a_retry_writes_only_the_shards_the_first_attempt_missed(
    redis_cluster: RedisClusterNodes, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_cluster.seed_url)
    broker = hub.client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    users = [f"p{i}" for i in range(9)]
    stopped = redis_cluster.primary_for("{user:p0}")
    behind = [u for u in users if redis_cluster.primary_for(f"{{user:{u}}}") is stopped]
    body = {"users": users, "data": "once"}
    key = {"Idempotency-Key": "order-9"}
    assert stopped.process is not None
    os.kill(stopped.process.pid, signal.SIGSTOP)
    try:
        status, answer = await hub.post(body, headers=key)  # waits out the link timeout
    finally:
        os.kill(stopped.process.pid, signal.SIGCONT)
    assert status == 503, answer
    status, answer = await hub.post(body, headers=key)
    assert status == 200, answer
    assert answer["ids"] == {f"user:{u}": "1-0" for u in users}
    for user in users:  # each channel holds the message once, whichever attempt wrote it
        page = await broker.history(f"user:{user}", 0, 10)
        assert [e.data for e in page.entries] == ["once"], user
    assert behind, "some channels were on the stopped shard"
    status, again = await hub.post(body, headers=key)
    assert (status, again) == (200, answer)
    await asyncio.sleep(0)


async def test_a_cluster_over_tls_is_found_and_carries_the_hub(
    tmp_path: Path, make_hub: MakeHub
) -> None:
    """rediss:// seeds with the CA: the slot map read over TLS names every node's TLS port
    (Redis names plain ports to plain clients), and commands and sharded pub/sub go there."""
    certs = make_certificates(tmp_path / "tls")
    cluster = started(lambda suffix: RedisClusterNodes(tmp_path / f"c{suffix}", certs=certs))
    try:
        hub = await make_hub(redis_url=cluster.seed_url)
        broker = hub.client.app[HUB].broker
        assert isinstance(broker, RedisBroker)
        route = broker.route
        assert isinstance(route, ClusterRoute)
        assert {port for _, port in route.primaries} <= set(cluster.tls_ports)
        users = [f"t{i}" for i in range(9)]
        shards = {cluster.primary_for(f"{{user:{u}}}").port for u in users}
        assert len(shards) == 3, "the users are spread over every shard"
        streams = [await hub.subscribe(u) for u in users]
        await hub.send("over tls", users=users)
        for stream in streams:
            assert (await stream.next(timeout=10)).data == "over tls"
            stream.close()
    finally:
        cluster.stop()
