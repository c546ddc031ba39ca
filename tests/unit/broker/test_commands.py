"""The pipelined command connection, against a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from hub.broker.commands import Commands, Script, parse_url
from hub.broker.live import LiveConnection
from hub.broker.redis import RedisBroker
from hub.config import Settings
from tests.support.redis_server import RedisServer
from tests.support.sinks import RecordingSink

ECHO = Script("return {KEYS[1], ARGV[1]}")


async def test_concurrent_calls_each_get_their_own_reply(redis_server: RedisServer) -> None:
    commands = Commands(redis_server.url)
    try:
        replies = await asyncio.gather(
            *(commands.run(ECHO, [f"k{n}"], [n]) for n in range(500)),
            *(commands.call("ECHO", f"e{n}") for n in range(500)),
        )
        assert replies[:500] == [[f"k{n}".encode(), str(n).encode()] for n in range(500)]
        assert replies[500:] == [f"e{n}".encode() for n in range(500)]
    finally:
        await commands.close()


async def test_a_script_redis_does_not_know_is_sent_in_full(own_redis: RedisServer) -> None:
    commands = Commands(own_redis.url)
    try:
        assert await commands.run(ECHO, ["a"], ["1"]) == [b"a", b"1"]
        await commands.call("SCRIPT", "FLUSH")
        assert await commands.run(ECHO, ["b"], ["2"]) == [b"b", b"2"]
        with pytest.raises(ResponseError, match=r"^ERR"):
            await commands.call("LPUSH")  # a refusal is the call's error, the link lives on
        assert await commands.call("PING") == b"PONG"
    finally:
        await commands.close()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(
    own_redis: RedisServer,
) -> None:
    commands = Commands(own_redis.url)
    try:
        client_id = await commands.call("CLIENT", "ID")
        blocked = asyncio.ensure_future(commands.call("BLPOP", "never", 0))
        async with Redis.from_url(own_redis.url) as admin:
            for _ in range(100):
                clients = await admin.client_list()
                if any(c["id"] == str(client_id) and c["cmd"] == "blpop" for c in clients):
                    break
                await asyncio.sleep(0.05)
            assert await admin.client_kill_filter(_id=client_id) == 1
        with pytest.raises(ConnectionError):
            await blocked
        assert await commands.call("PING") == b"PONG"
    finally:
        await commands.close()


async def test_a_call_without_an_answer_times_out_and_drops_the_connection() -> None:
    # A server that takes every command and never answers.
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    commands = Commands(f"redis://127.0.0.1:{port}", timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await commands.call("PING")
    finally:
        await commands.close()
        server.close()


async def test_a_call_waiting_for_a_connection_that_is_closed_fails_as_a_connection() -> None:
    """Closing (a node gone from the slot map) while a call waits for the connection: the
    call gets ConnectionError, which a publish answers with 503, never a cancellation,
    which would end the publish with no answer at all."""
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # primary=True: connecting asks the node its role, which this server never answers.
    commands = Commands(f"redis://127.0.0.1:{port}", timeout=30, primary=True)
    try:
        call = asyncio.create_task(commands.call("PING"))
        await asyncio.sleep(0.2)  # connected at TCP level, waiting for the role
        await commands.close()
        with pytest.raises(ConnectionError, match="closed while connecting"):
            await call
    finally:
        server.close()


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth")
    server.start()
    try:
        async with Redis(port=server.port) as admin:
            await admin.config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        commands = Commands(url)
        try:
            await commands.call("SET", "where", "db3")
        finally:
            await commands.close()
        async with Redis(port=server.port, password="s3cret", db=3) as check:
            assert await check.get("where") == b"db3"
        # A wrong password is Redis unusable (503), not a refused script (500).
        refused = Commands(f"redis://:wrong@127.0.0.1:{server.port}")
        with pytest.raises(ConnectionError, match=r"WRONGPASS|invalid"):
            await refused.call("PING")
        await refused.close()
    finally:
        server.stop()


def test_url_forms() -> None:
    assert parse_url("redis://u:p%40ss@h:7000/2") == {
        "host": "h",
        "port": 7000,
        "db": 2,
        "username": "u",
        "password": "p@ss",
    }
    assert parse_url("rediss://cache.example") == {
        "tls": True,
        "host": "cache.example",
        "port": 6379,
    }
    assert parse_url("unix:///run/redis.sock?db=1") == {"path": "/run/redis.sock", "db": 1}


async def test_a_redis_still_loading_is_up_and_says_so() -> None:
    """PING is refused while Redis loads its data: the connection still counts, so each
    command gets LOADING (a 503 the client retries) instead of a new connection each."""
    connections = 0

    async def loading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while await reader.read(4096):
                writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
        finally:
            writer.close()

    server = await asyncio.start_server(loading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    commands = Commands(f"redis://127.0.0.1:{port}")
    try:
        for _ in range(3):
            with pytest.raises(ResponseError, match="LOADING"):
                await commands.call("GET", "k")
        assert connections == 1
    finally:
        await commands.close()
        server.close()
        await server.wait_closed()


async def test_a_user_without_a_password_is_authenticated_as_that_user(
    own_redis: RedisServer,
) -> None:
    """`redis://bob@host`: AUTH bob "" (a `nopass` user), as redis-py does, not the default
    user (here switched off)."""
    async with Redis(port=own_redis.port) as admin:
        await admin.execute_command("ACL", "SETUSER", "bob", "on", "nopass", "~*", "&*", "+@all")  # type: ignore[no-untyped-call]
        await admin.execute_command("ACL", "SETUSER", "default", "off")  # type: ignore[no-untyped-call]
    commands = Commands(f"redis://bob@127.0.0.1:{own_redis.port}")
    try:
        assert await commands.call("ACL", "WHOAMI") == b"bob"
    finally:
        await commands.close()


async def test_a_host_name_that_cannot_be_encoded_does_not_end_the_pubsub_reader() -> None:
    settings = dataclasses.replace(Settings(), redis_url=f"redis://{'a' * 70}.invalid:6379")
    broker = RedisBroker(settings)
    await broker.start(RecordingSink())
    try:
        await asyncio.sleep(0.3)  # a few attempts, each refused
        live = broker._live
        assert isinstance(live, LiveConnection)
        assert not any(task.done() for task in live._tasks), "the reader retries"
    finally:
        await broker.close()
