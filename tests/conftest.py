"""Fixtures: a private Redis server, settings for either broker, a hub on a real HTTP server."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from yarl import URL

from hub.auth.verify import mint
from hub.config import Settings
from hub.http.app import create_app
from hub.http.serving import HubServer
from tests.hub_process import HubProcess
from tests.redis_cluster import RedisClusterNodes
from tests.redis_sentinel import SentinelSetup
from tests.redis_server import RedisServer
from tests.sse_client import SSEStream

pytest_plugins = ["tests.topologies"]

SUBSCRIBER_KEY = "subscriber-secret-for-tests-0123456789"
PUBLISHER_KEY = "publisher-secret-for-tests-0123456789"


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
    """One Sentinel set-up for the session's behaviour tests."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


# Modules that prove a behaviour on every topology set `broker_kind` to these.
EVERY_BROKER = ["memory", "redis", "cluster", "sentinel"]


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeSettings = Callable[..., Settings]


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


class HubClient:
    """Talks to a hub on a real HTTP server as publishers and browsers do."""

    def __init__(self, client: LiveClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def subscriber_token(
        self, user: str = "alice", topics: Sequence[str] = ("*",), **kw: Any
    ) -> str:
        return mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=topics, **kw)

    def publisher_token(self, grants: Sequence[str] = ("*",), **kw: Any) -> str:
        return mint(PUBLISHER_KEY, "HS256", sub="tests", publish=grants, **kw)

    async def post(
        self,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        import json

        data = raw if raw is not None else json.dumps(body).encode()
        all_headers = {
            "Authorization": f"Bearer {token or self.publisher_token()}",
            "Content-Type": content_type,
            **(headers or {}),
        }
        async with self.client.post("/publish", data=data, headers=all_headers) as response:
            return response.status, await response.json(content_type=None)

    async def send(
        self,
        data: Any = "hello",
        *,
        users: Sequence[str] = (),
        topics: Sequence[str] = (),
        event: str | None = None,
    ) -> dict[str, str]:
        body: dict[str, Any] = {"users": list(users), "topics": list(topics), "data": data}
        if event is not None:
            body["event"] = event
        status, answer = await self.post(body)
        assert status == 200, answer
        ids: dict[str, str] = answer["ids"]
        return ids

    async def subscribe(
        self,
        user: str = "alice",
        topics: Sequence[str] = (),
        *,
        last_event_id: str | None = None,
        query_last_id: str | None = None,
        token: str | None = None,
        wait: bool = True,
    ) -> SSEStream:
        params = [("topic", t) for t in topics]
        if query_last_id is not None:
            params.append(("lastEventId", query_last_id))
        headers = {"Authorization": f"Bearer {token or self.subscriber_token(user)}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        response = await self.client.get("/events", params=params, headers=headers)
        assert response.status == 200, await response.text()
        stream = SSEStream(response)
        if wait:
            await stream.wait_open()
        return stream


MakeHub = Callable[..., Awaitable[HubClient]]


class LiveClient:
    """An HTTP client of a hub served as `hub serve` serves it (the lean front before
    aiohttp, on a real socket): requests take paths relative to the hub."""

    def __init__(self, server: HubServer, session: ClientSession) -> None:
        self.server = server
        self.app = server.app
        self.host = "127.0.0.1"
        self.port = server.port
        self.session = session
        self.get = session.get
        self.post = session.post
        self.options = session.options
        self.request = session.request

    def make_url(self, path: str) -> URL:
        return URL.build(scheme="http", host=self.host, port=self.port, path=path or "/")

    async def close(self) -> None:
        if not self.session.closed:
            await self.session.close()
            await self.server.stop()


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


StartHub = Callable[..., HubProcess]


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
