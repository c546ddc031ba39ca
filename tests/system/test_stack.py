"""The compose stack's topology as local processes: redis-server with config/redis.conf, two
`hub serve` replicas, and nginx with config/nginx.conf in front; plus docker-compose.yml
validated against the Compose specification's schema."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yaml

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.logcheck import check_log, refuse_all, refused_requests
from tests.support.paths import ROOT
from tests.support.redis_server import free_port
from tests.support.sse_client import SSEStream
from tests.support.stack import (
    PUBLISHER,
    compose_schema,
    open_streams,
    start_nginx,
)


def _redis_with_project_config(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """config/redis.conf as compose runs it, with only the port, address and directory local."""
    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    text = (ROOT / "config" / "redis.conf").read_text()
    assert "\ndir /data\n" in text
    config = tmp_path / "redis.conf"
    config.write_text(text.replace("\ndir /data\n", f"\ndir {data}\n"))
    command = [shutil.which("redis-server") or "redis-server", str(config)]
    command += ["--port", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while (
        subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
        ).stdout.strip()
        != b"PONG"
    ):
        assert process.poll() is None, "redis-server exited"
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return process, port


@dataclass
class Stack:
    url: str
    replicas: list[HubProcess]


@pytest.fixture
def stack(tmp_path: Path, start_hub: StartHub) -> Iterator[Stack]:
    redis, redis_port = _redis_with_project_config(tmp_path)
    env = {
        "HUB_CONFIG": str(ROOT / "config" / "hub.toml"),
        "HUB_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
    }
    replicas = [start_hub(env), start_hub(env)]
    try:
        proxy, url = start_nginx(tmp_path, replicas)
    except BaseException:
        redis.terminate()
        redis.wait(timeout=10)
        raise
    try:
        yield Stack(url, replicas)
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.wait(timeout=10)
        redis.terminate()
        redis.wait(timeout=10)


async def _open(session: aiohttp.ClientSession, url: str, last_id: str | None = None) -> SSEStream:
    headers = {"Authorization": f"Bearer {mint(SUBSCRIBER_KEY, 'HS256', sub='nico')}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    response = await session.get(f"{url}/events", headers=headers)
    assert response.status == 200
    stream = SSEStream(response)
    await stream.wait_open()
    return stream


async def _publish(session: aiohttp.ClientSession, url: str, data: object) -> None:
    body = {"users": ["nico"], "data": data}
    async with session.post(f"{url}/publish", json=body, headers=PUBLISHER) as answer:
        assert answer.status == 200, await answer.text()


async def test_events_pass_nginx_unbuffered_and_survive_a_replica(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        stream = await _open(session, stack.url)
        # Unbuffered: each event arrives before the next one is published.
        for n in range(5):
            await _publish(session, stack.url, n)
            assert (await stream.next(timeout=10)).data == str(n)
        serving = [r for r in stack.replicas if await open_streams(session, r) == 1]
        assert len(serving) == 1
        serving[0].process.kill()  # the replica holding the stream dies
        serving[0].process.wait()
        assert await stream.rest() == []
        for n in range(5, 10):  # published while the client is away
            await _publish(session, stack.url, n)
        resumed = await _open(session, stack.url, last_id=stream.last_id)
        assert [e.data for e in await resumed.take(5)] == [str(n) for n in range(5, 10)]
        await _publish(session, stack.url, 10)
        assert (await resumed.next()).data == "10"
        resumed.close()


def test_compose_file_follows_the_compose_specification() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    validator = jsonschema.Draft7Validator(compose_schema())
    validator.validate(compose)
    services = compose["services"]
    assert services["hub"]["deploy"]["replicas"] == 2
    assert services["hub"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["hub"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    assert services["nginx"]["ports"] == ["8080:8080"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"services": {"x": {"deploy": {"replicas": "two"}}}})


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("FROM python:3.12-slim")
    assert "\nUSER hub\n" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text


async def test_refused_requests_through_nginx_leave_no_credential_in_any_log(
    stack: Stack, tmp_path: Path
) -> None:
    """What nginx passes on of requests that carry a credential beside a byte llhttp refuses
    (raw UTF-8, a control byte); a bare LF is left out: nginx reads it and sends a clean
    request on. Whoever refuses each (nginx, the front, aiohttp), it is a 4xx, and neither
    the replicas' logs nor nginx's own hold the secret."""
    cases = [case for case in refused_requests() if "bare LF" not in case.name]
    host, port = stack.url.removeprefix("http://").split(":")
    by_aiohttp = await refuse_all(host, int(port), cases)
    logs = "".join(replica.stderr.read_text() for replica in stack.replicas)
    check_log(logs + (tmp_path / "nginx.err").read_text(), cases, by_aiohttp)


async def test_undecodable_bytes_in_a_token_through_nginx_are_a_401_problem(stack: Stack) -> None:
    """nginx passes a byte that is not UTF-8 on; the hub refuses the token like any other."""
    host, port = stack.url.removeprefix("http://").split(":")
    body = b'{"users": ["nico"], "data": "x"}'
    for head in (
        b"GET /events HTTP/1.1\r\nAuthorization: Bearer abc\xff\r\n",
        b"GET /events HTTP/1.1\r\nCookie: hub_token=abc\xff\r\n",
        b"POST /publish HTTP/1.1\r\nAuthorization: Bearer abc\xff\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
    ):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            head + b"Host: hub\r\nConnection: close\r\n\r\n" + body * head.startswith(b"POST")
        )
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        status, _, rest = answer.partition(b"\r\n")
        assert status.split()[1] == b"401", answer
        assert b"\r\ncontent-type: application/problem+json" in rest.lower(), answer
    for replica in stack.replicas:
        assert "Traceback" not in replica.stderr.read_text()
