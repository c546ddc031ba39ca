"""What only the Redis broker must prove: atomic scripts, epochs, outages and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import hiredis
import pytest
from redis.asyncio import Redis

from hub.broker import live as live_module
from hub.broker.commands import parse_url
from hub.broker.keys import Keys
from hub.broker.live import LiveConnection
from hub.broker.redis import RedisBroker
from hub.config import Settings
from hub.errors import BrokerUnavailable, HubError
from tests.support.redis_server import RedisServer, free_port
from tests.support.sinks import RecordingSink, message
from tests.support.tls_certs import make_certificates


async def _delivered_live(sink: RecordingSink, hub_broker: RedisBroker, channel: str) -> None:
    before = len(sink.delivered)
    await hub_broker.publish([message(channel, data="live again")])
    await sink.wait_for(before + 1)
    assert sink.delivered[-1][2].data == "live again"


@contextlib.asynccontextmanager
async def _started(url: str, **settings: Any) -> AsyncIterator[tuple[RecordingSink, RedisBroker]]:
    """A Redis broker on `url`, started with a recording sink, closed afterwards."""
    broker = RedisBroker(dataclasses.replace(Settings(), redis_url=url, **settings))
    sink = RecordingSink()
    await broker.start(sink)
    try:
        yield sink, broker
    finally:
        await broker.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _fake_redis(handler: Handler) -> AsyncIterator[str]:
    """A TCP server playing a misbehaving Redis; yields its URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def broker(own_redis: RedisServer) -> AsyncIterator[tuple[RecordingSink, RedisBroker]]:
    broker = RedisBroker(dataclasses.replace(Settings(), redis_url=own_redis.url))
    sink = RecordingSink()
    await broker.start(sink)
    yield sink, broker
    await broker.close()


async def test_a_failed_publish_writes_nothing_to_any_target(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    _, hub_broker = broker
    async with Redis.from_url(own_redis.url) as redis:
        await redis.set(hub_broker.keys.stream("topic:broken"), "not a stream")
        with pytest.raises(HubError):
            await hub_broker.publish([message("user:ok", "topic:broken")])
        assert await redis.exists(hub_broker.keys.stream("user:ok")) == 0
    assert (await hub_broker.history("user:ok", None, 0)).epoch == 0


async def test_a_wiped_channel_gets_a_new_epoch(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    _, hub_broker = broker
    await hub_broker.publish([message("user:w")])
    before = await hub_broker.history("user:w", None, 0)
    async with Redis.from_url(own_redis.url) as redis:
        await redis.flushall()
    await hub_broker.publish([message("user:w")])
    after = await hub_broker.history("user:w", 0, 10)
    assert after.epoch != before.epoch
    assert after.top == 1


async def test_outage_is_broker_unavailable_then_recovers(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    sink, hub_broker = broker
    await hub_broker.subscribe("user:o")
    own_redis.stop()
    with pytest.raises(BrokerUnavailable):
        await hub_broker.publish([message("user:o")])
    assert not await hub_broker.ready()
    own_redis.start()
    async with asyncio.timeout(20):
        while not await hub_broker.ready():
            await asyncio.sleep(0.05)
    assert sink.resyncs >= 2
    assert hub_broker.reconnects >= 1
    await _delivered_live(sink, hub_broker, "user:o")


async def test_killed_pubsub_connection_is_resubscribed_and_resynced(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    sink, hub_broker = broker
    await hub_broker.subscribe("user:k")
    await hub_broker.subscribe("user:gone")
    resyncs = sink.resyncs
    async with Redis.from_url(own_redis.url) as redis:
        killed = await redis.execute_command("CLIENT KILL TYPE pubsub")  # type: ignore[no-untyped-call]
        assert killed >= 1
        async with asyncio.timeout(10):
            while await hub_broker.ready():  # noticed: no link until the next attempt
                await asyncio.sleep(0.005)
        hub_broker.unsubscribe("user:gone")  # while no link is up, as a stream leaving
        async with asyncio.timeout(10):
            while sink.resyncs == resyncs:
                await asyncio.sleep(0.02)
        numsub = await redis.pubsub_numsub(hub_broker.keys.live("user:k"))
        assert numsub[0][1] == 1
        numsub = await redis.pubsub_numsub(hub_broker.keys.live("user:gone"))
        assert numsub[0][1] == 0
    live = hub_broker._live
    assert isinstance(live, LiveConnection)
    assert set(live.ledger.subscribed_at) == {"user:k"}, "no bookkeeping left for a channel gone"
    await _delivered_live(sink, hub_broker, "user:k")


async def test_references_are_counted(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    _, hub_broker = broker
    live = hub_broker.keys.live("user:r")
    await hub_broker.subscribe("user:r")
    await hub_broker.subscribe("user:r")
    async with Redis.from_url(own_redis.url) as redis:
        assert (await redis.pubsub_numsub(live))[0][1] == 1
        hub_broker.unsubscribe("user:r")
        await hub_broker.subscribe("user:other")  # its PING reply orders after the last change
        assert (await redis.pubsub_numsub(live))[0][1] == 1
        hub_broker.unsubscribe("user:r")
        await hub_broker.subscribe("user:third")
        assert (await redis.pubsub_numsub(live))[0][1] == 0


async def test_a_malformed_live_message_is_dropped_and_the_reader_lives_on(
    broker: tuple[RecordingSink, RedisBroker], own_redis: RedisServer
) -> None:
    sink, hub_broker = broker
    await hub_broker.subscribe("user:m")
    async with Redis.from_url(own_redis.url) as redis:
        for junk in (b"nonsense", b"1\nx\ny\nz", b"\xff\xfe\n1\ne\nd"):
            await redis.publish(hub_broker.keys.live("user:m"), junk)
    await hub_broker.publish([message("user:m", data="fine")])
    await sink.wait_for(1)
    assert [entry.data for _, _, entry in sink.delivered] == ["fine"]
    assert await hub_broker.ready()


async def test_the_pubsub_link_authenticates_with_the_url_password(own_redis: RedisServer) -> None:
    async with Redis.from_url(own_redis.url) as admin:
        await admin.config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{own_redis.port}/2"
    async with _started(url) as (sink, broker):
        async with asyncio.timeout(10):
            await broker.subscribe("user:p")
        assert await broker.ready()
        await _delivered_live(sink, broker, "user:p")
        assert broker.reconnects == 0


async def test_a_refused_subscribe_is_not_taken_for_served(own_redis: RedisServer) -> None:
    """An ACL that forbids a channel: Redis refuses the SUBSCRIBE it is in. The link is
    dropped (logged) and made again with a growing delay, and the hub is not ready, so the
    misconfiguration shows instead of a channel going silently unserved."""
    async with Redis.from_url(own_redis.url) as admin:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "hub", "on", ">pw", "~*", "resetchannels", "&hub:{user:ok}",
            "+@all",
        )  # fmt: skip
    url = f"redis://hub:pw@127.0.0.1:{own_redis.port}"
    async with _started(url, key_prefix="hub:") as (sink, broker):
        await broker.subscribe("user:ok")
        await _delivered_live(sink, broker, "user:ok")
        broker.subscribe("user:forbidden")
        async with asyncio.timeout(10):
            while broker.reconnects < 2:
                await asyncio.sleep(0.02)
        assert not await broker.ready()
        # Backing off: 50, 100, 200, 400 ms... (without it, thousands a second).
        before = broker.reconnects
        await asyncio.sleep(1)
        assert broker.reconnects - before <= 10


async def test_a_redis_that_accepts_and_drops_connections_is_retried_with_backoff() -> None:
    """A proxy in front of a Redis that is down, or a Redis at its client limit: the TCP
    connection succeeds and then closes (or answers an error). That is a failed attempt."""
    attempts = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        if attempts % 2:
            writer.write(b"-ERR max number of clients reached\r\n")
        writer.close()

    async with _fake_redis(refuse) as url, _started(url) as (_, broker):
        async with asyncio.timeout(10):
            while attempts < 3:
                await asyncio.sleep(0.02)
        await asyncio.sleep(1)
        assert attempts <= 15, "the delay between attempts grows"
        assert not await broker.ready()


async def test_a_link_dropped_right_after_going_live_is_retried_with_backoff() -> None:
    """Redis cutting a subscriber (its output buffer limit, say) just after the link went
    live: each new link makes every stream resync, so retries must not come every 50 ms."""
    attempts = 0

    async def flap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        parser = hiredis.Reader()
        try:
            while data := await reader.read(4096):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    if command == [b"PING"]:  # the connect's round trip
                        writer.write(b"+PONG\r\n")
                    elif command[0] == b"PING":  # the flush's: the link is live, then cut
                        writer.write(b"$%d\r\n%b\r\n" % (len(command[1]), command[1]))
                        return
        finally:
            writer.close()

    async with _fake_redis(flap) as url, _started(url) as (sink, _):
        async with asyncio.timeout(10):
            while sink.resyncs < 1:
                await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)
        assert attempts <= 15, "the delay between attempts grows"


async def test_commands_and_pubsub_over_tls(tmp_path: Path) -> None:
    """rediss:// with the server's CA: both links verify the server and carry the hub."""
    certs = make_certificates(tmp_path / "tls")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        extra=(
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(certs["cert"]),
            "--tls-key-file", str(certs["key"]),
            "--tls-ca-cert-file", str(certs["ca"]),
            "--tls-auth-clients", "no",
        ),
    )  # fmt: skip
    server.start()
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs['ca']}"
    try:
        async with _started(url) as (sink, broker):
            async with asyncio.timeout(10):
                await broker.subscribe("user:tls")
            assert await broker.ready()
            await _delivered_live(sink, broker, "user:tls")
        # Without the CA the server is not trusted: never connected, never ready.
        async with _started(f"rediss://127.0.0.1:{tls_port}/0") as (_, untrusted):
            with pytest.raises(BrokerUnavailable):
                await untrusted.publish([message("user:tls", data="no")])
            assert not await untrusted.ready()
    finally:
        server.stop()


async def test_a_full_redis_is_broker_unavailable(own_redis: RedisServer) -> None:
    """Redis's refusals arrive as error replies; an OOM one is a 503 to retry, as READONLY.
    (The channel exists first: a script's first write there is refused.)"""
    async with _started(own_redis.url) as (_, broker):
        await broker.publish([message("user:full")])
        async with Redis.from_url(own_redis.url) as admin:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", 1)
        with pytest.raises(BrokerUnavailable) as refused:
            await broker.publish([message("user:full")])
    assert str(refused.value.__cause__).startswith("OOM ")


async def test_a_host_name_that_cannot_be_encoded_is_broker_unavailable() -> None:
    """Connecting raises UnicodeError for a label IDNA cannot encode: unreachable, a 503."""
    async with _started(f"redis://{'a' * 70}.invalid:6379") as (_, broker):
        with pytest.raises(BrokerUnavailable):
            await broker.publish([message("user:nowhere")])
        with pytest.raises(BrokerUnavailable):
            await broker.history("user:nowhere", None, 0)
        assert not await broker.ready()


async def test_retry_now_ends_the_wait_before_the_next_connection_attempt(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Sentinel naming a new primary must not wait out the backoff: with a backoff of an
    hour, the link still connects as soon as it is told to retry."""
    monkeypatch.setattr(live_module, "_MIN_BACKOFF", 3600.0)
    monkeypatch.setattr(live_module, "_MAX_BACKOFF", 3600.0)
    calls = 0

    async def resolve() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the old primary is gone")
        return parse_url(own_redis.url)

    sink = RecordingSink()
    live = LiveConnection(resolve, Keys("retry:"), sink)
    live.start()
    try:
        async with asyncio.timeout(10):
            while calls < 1:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert calls == 1, "waiting out the backoff"
        assert not live.alive
        live.retry_now()
        async with asyncio.timeout(10):
            while not live.alive:
                await asyncio.sleep(0.01)
        assert sink.resyncs >= 1
    finally:
        await live.close()
