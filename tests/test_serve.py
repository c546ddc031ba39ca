"""`hub serve` and `hub token` as real processes: start-up, first run, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
import jwt
import pytest

from tests.conftest import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.redis_server import RedisServer
from tests.sse_client import SSEStream


def _token(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "token", *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


async def _open_and_receive(
    session: aiohttp.ClientSession, response: aiohttp.ClientResponse, publisher: str, user: str
) -> SSEStream:
    """The open stream `response` receives a message published to `user`."""
    stream = SSEStream(response)
    await stream.wait_open()
    async with session.post(
        "/publish",
        json={"users": [user], "data": f"hi {user}"},
        headers={"Authorization": f"Bearer {publisher}"},
    ) as answer:
        assert answer.status == 200
    assert (await stream.next()).data == f"hi {user}"
    return stream


def test_token_command_signs_with_the_configured_keys() -> None:
    claims = jwt.decode(
        _token("--sub", "alice", "--topics", "news, room:*"), SUBSCRIBER_KEY, algorithms=["HS256"]
    )
    assert claims["sub"] == "alice"
    assert claims["topics"] == ["news", "room:*"]
    assert claims["exp"] - time.time() == pytest.approx(3600, abs=60)
    publisher = jwt.decode(
        _token("--sub", "svc", "--publisher", "--publish", "user:*"),
        PUBLISHER_KEY,
        algorithms=["HS256"],
    )
    assert publisher["publish"] == ["user:*"]
    missing = subprocess.run(
        [sys.executable, "-m", "hub", "token", "--sub", "a"],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "HUB_SUBSCRIBER_JWT_KEY" in missing.stderr


async def test_sigterm_ends_open_streams_cleanly_and_exits_0(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = start_hub(
        {
            "HUB_REDIS_URL": redis_server.url,
            "HUB_KEY_PREFIX": "serve-test:",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    subscriber, publisher = _token("--sub", "sam"), _token("--sub", "p", "--publisher")
    async with aiohttp.ClientSession(hub.url) as session:
        async with asyncio.timeout(20):
            while (await session.get("/readyz")).status != 200:
                await asyncio.sleep(0.05)
        response = await session.get("/events", params={"token": subscriber})
        stream = await _open_and_receive(session, response, publisher, "sam")
        started = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        assert await stream.rest() == []
        assert not stream.aborted, "the stream must end with a clean chunked EOF"
    assert await asyncio.to_thread(hub.process.wait, 15) == 0
    assert time.monotonic() - started < 10
    log = hub.stderr.read_text()
    assert '"GET /events?token=***"' in log, log
    assert subscriber not in log, "tokens never appear in logs"


async def test_first_run_with_nothing_configured(start_hub: StartHub) -> None:
    hub = start_hub({})
    out = hub.stdout.read_text()
    err = hub.stderr.read_text()
    assert "in-memory broker" in err
    assert "generated random keys" in err
    subscriber = re.search(r"Subscriber token[^\n]*\n\s+(\S+)", out)
    publisher = re.search(r"Publisher token[^\n]*\n\s+(\S+)", out)
    assert subscriber
    assert publisher
    async with aiohttp.ClientSession(hub.url) as session:
        response = await session.get(
            "/events", headers={"Authorization": f"Bearer {subscriber[1]}"}
        )
        (await _open_and_receive(session, response, publisher[1], "alice")).close()
        # Keys are random per run: a token signed elsewhere is refused.
        forged = _token("--sub", "alice")
        refused = await session.get("/events", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status == 401


async def test_json_logs_have_one_line_per_stream_and_no_tokens(start_hub: StartHub) -> None:
    hub = start_hub(
        {
            "HUB_LOG_FORMAT": "json",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    subscriber, publisher = _token("--sub", "jay"), _token("--sub", "p", "--publisher")
    async with aiohttp.ClientSession(hub.url) as session:
        response = await session.get("/events", params={"token": subscriber})
        (await _open_and_receive(session, response, publisher, "jay")).close()
        async with asyncio.timeout(20):
            while "stream closed" not in hub.stderr.read_text():
                await asyncio.sleep(0.05)
    text = hub.stderr.read_text()
    assert subscriber not in text
    assert publisher not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    closed = [entry for entry in lines if entry["message"] == "stream closed"]
    assert len(closed) == 1
    assert closed[0]["user"] == "jay"
    assert closed[0]["events"] == 1
    assert closed[0]["duration_s"] >= 0
    opened = [entry for entry in lines if entry["message"] == "stream opened"]
    assert opened[0]["channels"] == ["user:jay"]
    assert any(entry["logger"] == "aiohttp.access" for entry in lines)
