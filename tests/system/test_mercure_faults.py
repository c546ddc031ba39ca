"""Mercure streams when the live path loses an update: the index notices the gap and the
streams that may have missed something read it from history, once, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.resources import files

import pytest
from redis.asyncio import Redis

from hub.broker.keys import Keys
from hub.mercure.update import LOG, Update
from tests.support.hubs import MakeHub
from tests.support.mercure import MercureClient, mercure_settings
from tests.support.redis_server import RedisServer
from tests.support.sse_client import datas


@pytest.fixture(params=["redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def mercure(make_hub: MakeHub) -> AsyncIterator[tuple[MercureClient, str]]:
    hub = await make_hub(**mercure_settings())
    client = MercureClient(hub.client.session)
    yield client, hub.settings.key_prefix
    client.close()


async def test_an_update_lost_with_the_pubsub_link_reaches_its_streams_from_history(
    mercure: tuple[MercureClient, str], redis_server: RedisServer
) -> None:
    client, prefix = mercure
    a = await client.subscribe("urn:a")
    b = await client.subscribe("urn:{x}")
    await client.publish("urn:a", "first")
    assert datas(await a.take(1)) == ["first"]
    assert datas(await b.take(1)) == ["first"]
    # Redis kills the pub/sub link and applies a publish in one transaction: the live
    # message is gone for good; only history can deliver it.
    keys = Keys(prefix)
    message = Update(("urn:a",), "only from history").message()
    script = files("hub.broker").joinpath("lua", "publish.lua").read_text()
    args: list[str | int] = [1000, 3600, 7200, 60, "", "PUBLISH", 1, keys.live(LOG), 1]
    args += [message.event, message.data]
    async with Redis.from_url(redis_server.url) as redis, redis.pipeline(transaction=True) as tx:
        tx.execute_command("CLIENT KILL TYPE pubsub")
        tx.eval(script, 2, keys.stream(LOG), keys.meta(LOG), *args)
        killed, _ = await tx.execute()
    assert killed >= 1
    await client.publish("urn:b", "after")
    await client.publish("urn:a", "last")
    assert datas(await a.take(2, timeout=20)) == ["only from history", "last"]
    assert datas(await b.take(3, timeout=20)) == ["only from history", "after", "last"]
