"""Fixtures: a private Redis server, settings for either broker, a hub on a real HTTP server."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from hub.config import Settings
from hub.http.app import create_app
from hub.http.serving import HubServer
from tests.support.hub_process import HubProcess
from tests.support.hubs import (
    PUBLISHER_KEY,
    SUBSCRIBER_KEY,
    HubClient,
    LiveClient,
    MakeHub,
    MakeSettings,
    StartHub,
)
from tests.support.redis_cluster import RedisClusterNodes
from tests.support.redis_sentinel import SentinelSetup
from tests.support.redis_server import RedisServer

pytest_plugins = ["tests.support.topologies"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that stop, wipe or kill it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own with AOF on (fsync always), for restarts."""
    server = RedisServer(tmp_path / "redis-aof", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """One Redis Cluster for the session's behaviour tests (failover tests start their own)."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def shared_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """One Sentinel set-up for the session's behaviour tests (failover tests start their
    own). Its primary is failed over only after 20 s of silence: a loaded CI machine can
    stall a primary for 2 s, and a failover under a behaviour test that does not expect
    one fails it (writes acknowledged without HUB_REPLICAS_ACK may be lost)."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"), down_after_ms=20000)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


# Fixtures that start real processes (redis-server, a Cluster, Sentinel, `hub serve`):
# `make test-fast` (HUB_TEST_FAST=1) leaves out the tests that use them, and runs the
# behaviour suites on the in-memory broker only.
REAL_PROCESSES = {
    "redis_server", "own_redis", "aof_redis", "shared_cluster", "shared_sentinel",
    "redis_cluster", "redis_sentinel", "start_hub",
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("HUB_TEST_FAST"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        kind = getattr(getattr(item, "callspec", None), "params", {}).get("broker_kind", "memory")
        real = REAL_PROCESSES.intersection(getattr(item, "fixturenames", ()))
        (drop if real or kind != "memory" else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_settings(broker_kind: str, request: pytest.FixtureRequest) -> MakeSettings:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "subscriber_jwt_key": SUBSCRIBER_KEY,
            "publisher_jwt_key": PUBLISHER_KEY,
            "key_prefix": f"t{uuid.uuid4().hex[:8]}:",
            "redis_url": "",
        }
        if broker_kind == "redis":
            values["redis_url"] = request.getfixturevalue("redis_server").url
        elif broker_kind == "cluster":
            values["redis_url"] = request.getfixturevalue("shared_cluster").seed_url
        elif broker_kind == "sentinel":
            values["redis_url"] = request.getfixturevalue("shared_sentinel").url
        values.update(overrides)
        return dataclasses.replace(Settings(), **values)

    return make


@pytest.fixture
async def make_hub(make_settings: MakeSettings) -> AsyncIterator[MakeHub]:
    clients: list[LiveClient] = []

    async def make(**overrides: Any) -> HubClient:
        settings = make_settings(**overrides)
        server = HubServer(create_app(settings))
        await server.start("127.0.0.1", 0)
        session = ClientSession(base_url=f"http://127.0.0.1:{server.port}")
        clients.append(LiveClient(server, session))
        return HubClient(clients[-1], settings)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubClient:
    return await make_hub()


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[StartHub]:
    """Starts `hub serve` processes (killed at teardown if still running)."""
    started: list[HubProcess] = []

    def start(env: dict[str, str], port: int | None = None) -> HubProcess:
        hub = HubProcess(tmp_path, env, port)
        started.append(hub)
        hub.wait_healthy()
        return hub

    yield start
    for hub in started:
        hub.stop()
