"""A primary SIGKILLed while streams are open and publishes flow, on a real Redis Cluster
(3 primaries + 3 replicas) and a real Sentinel set-up (1 primary, 2 replicas, 3 sentinels).

Publishes during the failover get 503 with Retry-After (never another 5xx), /readyz turns
503 and back, streams stay open, and afterwards every stream holds exactly what the new
primary holds, or was told `history_lost` for a channel whose entries it had received and
the promoted replica never got. Losses are made certain, not left to chance: the replica
that will be promoted is stopped (SIGSTOP) while the doomed primary takes writes.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.support.failover import Scene, lost
from tests.support.hubs import MakeHub
from tests.support.redis_cluster import RedisClusterNodes, admin
from tests.support.redis_sentinel import SentinelSetup

pytestmark = pytest.mark.timeout(120)
USERS = [f"f{i}" for i in range(6)]
# Beyond what loopback sockets buffer between a primary and its paused replica.
FILLER = 48 * 2**20


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # each test points its hub at its own topology


def _pause(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)


def _resume(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGCONT)


async def test_cluster_primary_killed_without_replica_acks(
    redis_cluster: RedisClusterNodes, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_cluster.seed_url, replicas_ack=0)
    scene = Scene(hub, USERS)
    await scene.start()
    victim = redis_cluster.primary_for("{user:f0}")
    doomed = [u for u in USERS if redis_cluster.primary_for(f"{{user:{u}}}") is victim]
    replica = redis_cluster.replicas_of(victim)[0]
    _pause(replica.process.pid if replica.process else None)
    try:
        # A paused replica's socket still takes in what the kernel buffers: a value larger
        # than those buffers leaves what follows in the primary's memory only. The
        # entries published meanwhile are acknowledged and delivered live, then die.
        with admin(victim.port) as client:
            client.set("{user:f0}:filler", b"x" * FILLER)
        await asyncio.sleep(1.0)
        redis_cluster.kill(victim)
    finally:
        _resume(replica.process.pid if replica.process else None)
    await scene.ready.wait_for(503)
    await scene.ready.wait_for(200, timeout=40)
    problems = await scene.finish()
    scene.check_publishes()
    assert problems == []
    assert any(lost(scene, user) for user in doomed), "streams that had lost entries were told"
    assert not any(lost(scene, u) for u in USERS if u not in doomed), "no false reset"


async def test_cluster_primary_killed_with_a_replica_ack_loses_nothing(
    redis_cluster: RedisClusterNodes, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_cluster.seed_url, replicas_ack=1, replicas_ack_timeout=0.5)
    scene = Scene(hub, USERS)
    await scene.start()
    victim = redis_cluster.primary_for("{user:f0}")
    replica = redis_cluster.replicas_of(victim)[0]
    _pause(replica.process.pid if replica.process else None)
    try:
        await asyncio.sleep(1.0)  # the victim's writes now wait for a replica: 503s
        redis_cluster.kill(victim)
    finally:
        _resume(replica.process.pid if replica.process else None)
    await scene.ready.wait_for(503)
    # The promoted replica has no replica of its own: publishes to it wait for one until
    # the old primary is back (as its replica). Not ready meanwhile.
    await asyncio.sleep(3)
    assert scene.ready.seen[-1] == 503
    await asyncio.to_thread(redis_cluster.restart, victim)
    await scene.ready.wait_for(200, timeout=40)
    problems = await scene.finish()
    scene.check_publishes()
    assert problems == []
    assert not any(lost(scene, user) for user in USERS), "no reset: nothing was lost"
    await scene.check_nothing_acknowledged_lost()


async def test_sentinel_primary_killed_the_hub_follows_the_new_primary(
    redis_sentinel: SentinelSetup, make_hub: MakeHub
) -> None:
    hub = await make_hub(redis_url=redis_sentinel.url, replicas_ack=1, replicas_ack_timeout=0.5)
    scene = Scene(hub, USERS[:3])
    await scene.start()
    old = redis_sentinel.kill_primary()
    await scene.ready.wait_for(503)
    await asyncio.to_thread(redis_sentinel.wait_failover, old.port)
    await scene.ready.wait_for(200, timeout=40)
    problems = await scene.finish()
    scene.check_publishes()
    assert problems == []
    assert not any(lost(scene, user) for user in scene.users)
    await scene.check_nothing_acknowledged_lost()
