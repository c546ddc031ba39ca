"""Pytest fixtures for failover tests: a private Redis Cluster and a Sentinel set-up.

A plugin module (pytest_plugins = ["tests.support.topologies"]). Both are function-scoped: tests
kill and restart nodes, so each gets a fresh topology, stopped at teardown even on failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from tests.support.redis_cluster import PortTaken, RedisClusterNodes
from tests.support.redis_sentinel import SentinelSetup


class Topology(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


T = TypeVar("T", bound=Topology)


def started(make: Callable[[str], T], attempts: int = 3) -> T:
    """make(suffix).start(), on other free ports if one was taken meanwhile (a port is
    picked free, then bound by the server a moment later)."""
    for attempt in range(attempts):
        topology = make(f"-{attempt}" if attempt else "")
        try:
            topology.start()
        except PortTaken:
            topology.stop()
            if attempt == attempts - 1:
                raise
        except BaseException:
            topology.stop()
            raise
        else:
            return topology
    raise AssertionError("unreachable")


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """3 primaries and 3 replicas, stable (all slots served, replicas linked): about 2 s."""
    cluster = started(lambda suffix: RedisClusterNodes(tmp_path / f"cluster{suffix}"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A primary, 2 linked replicas and 3 sentinels that know each other: about 2.5 s."""
    setup = started(lambda suffix: SentinelSetup(tmp_path / f"sentinel{suffix}"))
    try:
        yield setup
    finally:
        setup.stop()
