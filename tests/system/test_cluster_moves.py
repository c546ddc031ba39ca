"""A Redis Cluster changing under open streams without losing anything: a graceful
CLUSTER FAILOVER, and a slot migrated to another primary (ASK while it moves, MOVED and
a `sunsubscribe` push after) while publishes flow. Nothing is lost, so no stream may be
told `hub.reset`, and every stream receives every publish exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot

from tests.support.failover import Scene, lost
from tests.support.hubs import MakeHub
from tests.support.redis_cluster import RedisClusterNodes, admin

pytestmark = pytest.mark.timeout(120)
USERS = [f"m{i}" for i in range(6)]


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # each test points its hub at its own cluster


async def test_a_graceful_failover_loses_nothing_and_resets_nothing(
    redis_cluster: RedisClusterNodes, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_cluster.seed_url)
    scene = Scene(hub, USERS)
    await scene.start()
    await asyncio.to_thread(redis_cluster.graceful_failover, redis_cluster.primary_for("{user:m0}"))
    await scene.ready.wait_for(200)
    problems = await scene.finish()
    scene.check_publishes(felt=False)
    assert problems == []
    assert not any(lost(scene, user) for user in USERS)
    await scene.check_nothing_acknowledged_lost()


def _migrate(cluster: RedisClusterNodes, key: str, pause: float) -> None:
    """Moves the key's slot to another primary as redis-cli --cluster reshard does."""
    import time

    slot = key_slot(key.encode())
    source = cluster.primary_for(key)
    target = next(node for node in cluster.primaries() if node is not source)
    source_id, target_id = source.myself().node_id, target.myself().node_id
    with admin(target.port) as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
    with admin(source.port) as client:
        client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
        time.sleep(pause)  # publishes meet the slot half moved: ASK, TRYAGAIN
        while keys := client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):  # type: ignore[no-untyped-call]
            client.execute_command(  # type: ignore[no-untyped-call]
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
            )
    for node in cluster.primaries():
        with admin(node.port) as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
    cluster.wait_stable()


async def test_a_slot_moved_under_open_streams_loses_nothing(
    redis_cluster: RedisClusterNodes, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_cluster.seed_url)
    scene = Scene(hub, USERS)
    await scene.start()
    await asyncio.to_thread(_migrate, redis_cluster, "{user:m0}", 0.5)
    await scene.ready.wait_for(200)
    problems = await scene.finish()
    scene.check_publishes(felt=False)
    assert problems == []
    assert not any(lost(scene, user) for user in USERS)
    await scene.check_nothing_acknowledged_lost()
