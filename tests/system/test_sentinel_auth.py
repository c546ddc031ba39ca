"""A Sentinel set-up whose data nodes ask for a password, with sentinels that ask for it
too or not: the one URL password is given to the data nodes, and to the sentinels only
when they ask (real redis-server and redis-sentinel processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from tests.support.hubs import MakeHub
from tests.support.redis_cluster import admin
from tests.support.redis_sentinel import SentinelSetup
from tests.support.topologies import started

pytestmark = pytest.mark.timeout(90)
PASSWORD = "s3cret-sentinel"


@pytest.fixture
def broker_kind() -> str:
    return "memory"  # the hub is pointed at the test's own set-up


@pytest.mark.parametrize("sentinels_ask", [False, True], ids=["data-only", "sentinels-too"])
async def test_the_url_password_reaches_whoever_asks_for_it(
    tmp_path: Path, make_hub: MakeHub, sentinels_ask: bool
) -> None:
    setup = started(
        lambda suffix: SentinelSetup(
            tmp_path / f"s{suffix}", password=PASSWORD, sentinels_ask=sentinels_ask
        )
    )
    try:
        # The set-up asks as it says: the data nodes always, the sentinels when told to.
        with pytest.raises(redis.AuthenticationError), admin(setup.nodes[0].port) as client:
            client.ping()
        with admin(setup.sentinels[0].port) as client:
            if sentinels_ask:
                with pytest.raises(redis.AuthenticationError):
                    client.ping()
            else:
                assert client.ping()
        hub = await make_hub(redis_url=setup.url)
        async with asyncio.timeout(20):  # the live link connects after start-up
            while (await hub.client.get("/readyz")).status != 200:
                await asyncio.sleep(0.05)
        stream = await hub.subscribe("ann")
        await hub.send("through the sentinels", users=["ann"])
        assert (await stream.next(timeout=10)).data == "through the sentinels"
        stream.close()
    finally:
        setup.stop()
