"""A hub on a real HTTP server and the clients tests talk to it with: the keys its
tokens are signed with, and the brokers behaviour tests run on."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import ClientSession
from yarl import URL

from hub.auth.verify import mint
from hub.config import Settings
from hub.http.serving import HubServer
from tests.support.hub_process import HubProcess
from tests.support.sse_client import SSEStream

SUBSCRIBER_KEY = "subscriber-secret-for-tests-0123456789"
PUBLISHER_KEY = "publisher-secret-for-tests-0123456789"

# Modules that prove a behaviour on every topology set `broker_kind` to these.
EVERY_BROKER = ["memory", "redis", "cluster", "sentinel"]

MakeSettings = Callable[..., Settings]


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


StartHub = Callable[..., HubProcess]
