"""Durable Streams on Redis: what the conformance suite cannot see from outside."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, HubClient, MakeHub
from tests.support.redis_server import RedisServer

WRITER = {
    "Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='w', publish=['stream:*'])}",
    "Content-Type": "application/octet-stream",
}


@pytest.fixture(params=["redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _status(hub: HubClient, method: str, path: str, body: bytes = b"") -> int:
    async with hub.client.request(method, path, headers=WRITER, data=body) as response:
        return response.status


async def test_writes_wait_for_the_replicas_asked_for(make_hub: MakeHub) -> None:
    """A Redis with no replica cannot acknowledge HUB_REPLICAS_ACK=1: 503, as a publish."""
    hub = await make_hub(durable_streams=True, replicas_ack=1, replicas_ack_timeout=0.2)
    assert await _status(hub, "PUT", "/v1/stream/acked", b"x") == 503


async def test_a_stream_s_keys_share_one_slot_and_expire_after_its_ttl(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    hub = await make_hub(durable_streams=True)
    headers = {**WRITER, "Stream-TTL": "300"}
    async with hub.client.request("PUT", "/v1/stream/kept", headers=headers, data=b"x") as response:
        assert response.status == 201
    prefix = hub.settings.key_prefix
    async with Redis.from_url(redis_server.url) as redis:
        found = await redis.keys(f"{prefix}*ds:kept*")
        keys = sorted(k.decode() if isinstance(k, bytes) else k for k in found)
        assert keys == [f"{prefix}{{ds:kept}}:{s}" for s in ("m", "s")]  # no producer yet
        for key in keys:  # Redis drops them a minute after the stream's own expiry
            assert 300 < await redis.ttl(key) <= 360


async def test_a_durable_stream_is_never_trimmed_by_history_max_len(make_hub: MakeHub) -> None:
    hub = await make_hub(durable_streams=True, history_max_len=3)
    assert await _status(hub, "PUT", "/v1/stream/long") == 201
    every_byte = bytes(range(256))
    for _ in range(300):  # past Redis's 100-entry stream nodes, far past the setting
        assert await _status(hub, "POST", "/v1/stream/long", every_byte) == 204
    async with hub.client.get("/v1/stream/long?offset=-1", headers=WRITER) as response:
        assert await response.read() == every_byte * 300
