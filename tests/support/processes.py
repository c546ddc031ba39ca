"""Talking to `hub serve` processes: their environment, a publisher's header, a stream."""

from __future__ import annotations

from typing import Any

import aiohttp

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY
from tests.support.redis_server import RedisServer
from tests.support.sse_client import SSEStream


def hub_env(redis: RedisServer | str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "HUB_REDIS_URL": redis if isinstance(redis, str) else redis.url,
        "HUB_KEY_PREFIX": prefix,
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        **extra,
    }


def subscriber_jwt(user: str) -> str:
    return mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=["*"])


PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}


async def open_stream(
    session: aiohttp.ClientSession, hub: HubProcess, user: str, **kw: Any
) -> SSEStream:
    headers = {"Authorization": f"Bearer {subscriber_jwt(user)}"}
    if "last_id" in kw:
        headers["Last-Event-ID"] = kw.pop("last_id")
    response = await session.get(f"{hub.url}/events", headers=headers, params=kw)
    assert response.status == 200
    stream = SSEStream(response)
    await stream.wait_open()
    return stream
