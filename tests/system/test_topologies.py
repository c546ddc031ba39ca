"""The failover fixtures themselves: a real Redis Cluster and a real Sentinel set-up."""

from __future__ import annotations

import time

import pytest
import redis
from redis.cluster import ClusterNode as Seed

from tests.support.redis_cluster import RedisClusterNodes, admin, call
from tests.support.redis_sentinel import SentinelSetup

# Each test starts its own topology (2 s) and most wait for a failover (2 to 3 s).
pytestmark = pytest.mark.timeout(90)


def test_cluster_serves_every_slot_from_three_primaries_with_a_replica_each(
    redis_cluster: RedisClusterNodes,
) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    assert sorted(redis_cluster.replicas(), key=id) == sorted(
        [replica for primary in primaries for replica in redis_cluster.replicas_of(primary)],
        key=id,
    )
    assert all(len(redis_cluster.replicas_of(primary)) == 1 for primary in primaries)
    slots = sum(high - low + 1 for p in primaries for low, high in p.myself().slots)
    assert slots == 16384
    # A cluster client finds the slot map from the seeds alone and routes each key.
    addresses = [a.split(":") for a in redis_cluster.seed_url.removeprefix("redis://").split(",")]
    seeds = [Seed(host, int(port)) for host, port in addresses]  # type: ignore[no-untyped-call]
    client = redis.RedisCluster(startup_nodes=seeds, decode_responses=True)
    try:
        for key in ("a", "b", "c", "{user}:1"):
            client.set(key, key)
            with admin(redis_cluster.primary_for(key).port) as owner:
                assert owner.get(key) == key
    finally:
        client.close()


def test_a_replicated_key_outlives_sigkill_of_its_primary_which_rejoins_as_replica(
    redis_cluster: RedisClusterNodes,
) -> None:
    primary = redis_cluster.primary_for("survivor")
    (replica,) = redis_cluster.replicas_of(primary)
    with admin(primary.port) as client:
        client.set("survivor", "value")
        assert call(client, "WAIT", 1, 1000) == 1

    killed_at = time.monotonic()
    redis_cluster.kill(primary)
    redis_cluster.wait_stable(timeout=30)
    assert time.monotonic() - killed_at < 15
    assert redis_cluster.primary_for("survivor") is replica
    with admin(replica.port) as client:
        assert client.get("survivor") == "value"

    redis_cluster.restart(primary)
    assert redis_cluster.replicas_of(replica) == [primary]
    with admin(primary.port) as client:
        call(client, "READONLY")
        assert client.get("survivor") == "value"  # resynced from the new primary


def test_graceful_failover_swaps_a_primary_and_its_replica(
    redis_cluster: RedisClusterNodes,
) -> None:
    primary = redis_cluster.primaries()[0]
    (replica,) = redis_cluster.replicas_of(primary)
    assert redis_cluster.graceful_failover(primary) is replica
    assert replica in redis_cluster.primaries()
    assert redis_cluster.replicas_of(replica) == [primary]


def test_sentinels_promote_a_replica_and_demote_the_old_primary_on_return(
    redis_sentinel: SentinelSetup,
) -> None:
    old = redis_sentinel.current_primary()
    with admin(old.port) as client:
        client.set("survivor", "value")
        assert call(client, "WAIT", 2, 1000) == 2

    killed_at = time.monotonic()
    assert redis_sentinel.kill_primary() is old
    new = redis_sentinel.wait_failover(old.port, timeout=15)
    assert time.monotonic() - killed_at < 15
    assert new is not old
    with admin(new.port) as client:
        assert client.get("survivor") == "value"
    redis_sentinel.wait_replicas(timeout=15)  # the other replica is repointed to it

    # It comes back as a primary (its config says so) until the sentinels demote it.
    redis_sentinel.restart(old)
    assert old.role() == "slave"
    assert old.primary_port() == new.port
