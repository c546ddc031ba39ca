"""Real `hub serve` processes on a real Redis: slow consumers, replicas, and a moved stream."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket

import aiohttp
import pytest

from tests.support.hub_process import HubProcess
from tests.support.hubs import StartHub
from tests.support.processes import PUBLISHER, hub_env, open_stream, subscriber_jwt
from tests.support.redis_server import RedisServer


async def _publish_padded(
    session: aiohttp.ClientSession, hub: HubProcess, topic: str, total: int, batch: int, pad: str
) -> None:
    """`total` events {"n": 0..total-1, "pad": pad} to `topic`, `batch` per request."""
    for start in range(0, total, batch):
        body = [
            {"topics": [topic], "data": {"n": n, "pad": pad}} for n in range(start, start + batch)
        ]
        async with session.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200


def _stalled_stream(hub: HubProcess, user: str, topic: str) -> socket.socket:
    """A client that opens a stream and then never reads: a tiny receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", hub.port))
    sock.sendall(
        f"GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {subscriber_jwt(user)}\r\n\r\n".encode()
    )
    sock.settimeout(10)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def _drain_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # cut by the hub: the expected end of a slow stream
    return received


async def test_slow_consumer_under_10000_events(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = start_hub(hub_env(redis_server, "slow:", HUB_HISTORY_MAX_LEN="20000"))
    pad = "x" * 4000
    async with aiohttp.ClientSession() as session:
        stalled = _stalled_stream(hub, "stalled", "firehose")
        fast = await open_stream(session, hub, "fast", topic="firehose")
        rss_before = hub.rss_kib()
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < 10000:
                received.append(json.loads((await fast.next(timeout=30)).data)["n"])

        reading = asyncio.create_task(read_fast())
        await _publish_padded(session, hub, "firehose", 10000, 100, pad)
        await reading
        growth_mib = (hub.rss_kib() - rss_before) / 1024
        assert received == list(range(10000)), "the other stream got everything, in order"
        # 40 MB flowed to a client that read nothing: the hub kept a bounded amount of it.
        assert growth_mib < 30, f"hub grew by {growth_mib:.1f} MiB"
        raw = await asyncio.to_thread(_drain_until_closed, stalled)
        stalled.close()
        frames = re.findall(rb"id: (\S+)\nevent: message\ndata: ([^\n]+)\n\n", raw)
        last_id, last_data = frames[-1]
        last_n = json.loads(last_data)["n"]
        assert last_n < 9999, "the stalled stream was cut before the end"
        resumed = await open_stream(
            session, hub, "stalled", topic="firehose", last_id=last_id.decode()
        )
        rest = [
            json.loads((await resumed.next(timeout=30)).data)["n"] for _ in range(9999 - last_n)
        ]
        assert rest == list(range(last_n + 1, 10000))
        resumed.close()
        fast.close()


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """One Redis, a Cluster's seeds, or Sentinel (the session's shared set-ups)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("shared_cluster").seed_url)
    if request.param == "sentinel":
        return str(request.getfixturevalue("shared_sentinel").url)
    return str(request.getfixturevalue("redis_server").url)


async def test_a_stream_moves_to_another_replica_when_one_is_stopped(
    start_hub: StartHub, redis_url: str
) -> None:
    env = hub_env(redis_url, "replicas:")
    first, second = start_hub(env), start_hub(env)
    total = 300
    async with aiohttp.ClientSession() as session:
        stream = await open_stream(session, first, "rene")
        received: list[int] = []

        async def publish_through_second() -> None:
            for n in range(total):
                async with session.post(
                    f"{second.url}/publish", json={"users": ["rene"], "data": n}, headers=PUBLISHER
                ) as answer:
                    assert answer.status == 200
                await asyncio.sleep(0.002)

        publishing = asyncio.create_task(publish_through_second())
        while len(received) < 60:
            received.append(int((await stream.next()).data))
        first.process.send_signal(signal.SIGTERM)
        try:
            while True:
                received.append(int((await stream.next()).data))
        except EOFError:
            assert not stream.aborted
        assert await asyncio.to_thread(first.process.wait, 15) == 0
        moved = await open_stream(session, second, "rene", last_id=stream.last_id)
        await publishing
        while len(received) < total:
            received.append(int((await moved.next()).data))
        assert received == list(range(total))
        moved.close()


async def test_stalled_streams_of_large_events_hold_bounded_memory(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    """Bytes, not only frames, bound a stalled stream: three stalled clients and 60 KB events."""
    hub = start_hub(hub_env(redis_server, "large:"))
    stalled = [_stalled_stream(hub, f"big{n}", "large") for n in range(3)]
    rss_before = hub.rss_kib()
    pad = "y" * 60000
    async with aiohttp.ClientSession() as session:
        await _publish_padded(session, hub, "large", 400, 10, pad)
    growth_mib = (hub.rss_kib() - rss_before) / 1024
    # 24 MB flowed to each of three clients that read nothing.
    assert growth_mib < 40, f"hub grew by {growth_mib:.1f} MiB"
    for sock in stalled:
        raw = await asyncio.to_thread(_drain_until_closed, sock)
        sock.close()
        assert raw.count(b"event: message") < 400, "each stalled stream was cut"
