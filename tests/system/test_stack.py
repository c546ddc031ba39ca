"""The compose stack's topology as local processes: redis-server with config/redis.conf, two
`hub serve` replicas, and nginx with config/nginx.conf in front; plus docker-compose.yml
validated against the Compose specification's schema."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from hub.auth.verify import mint
from hub.config import load_settings
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.logcheck import check_log, refuse_all, refused_requests
from tests.support.mercure import MERCURE_KEY, MercureClient, classic_token
from tests.support.paths import ROOT
from tests.support.redis_server import RedisServer, free_port
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
        "HUB_MERCURE": "true",
        "HUB_MERCURE_JWT_KEY": MERCURE_KEY,
        "HUB_MERCURE_ANONYMOUS": "true",
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
        # config/hub.toml is production's: no demo page (nor its login).
        async with session.get(f"{stack.url}/") as page:
            assert page.status == 404
        async with session.post(f"{stack.url}/demo/login", json={"user": "x"}) as login:
            assert login.status in (404, 405)
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


async def test_a_fetch_client_streams_through_nginx_with_post(stack: Stack) -> None:
    """POST /events (a fetch client's, parameters in a JSON body) passes nginx unbuffered."""
    token = mint(SUBSCRIBER_KEY, "HS256", sub="nico", topics=["desk"])
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{stack.url}/events", json={"topics": ["desk"]}, headers=headers
        )
        assert response.status == 200
        stream = SSEStream(response)
        await stream.wait_open()
        for n in range(3):
            await _publish(session, stack.url, f"post-{n}")
            assert (await stream.next(timeout=10)).data == f"post-{n}"
        stream.close()


async def test_replicas_serve_one_mercure_audience_with_exact_resume(stack: Stack) -> None:
    """Mercure through nginx: a subscriber resumes on the other replica from the
    publisher's id, exactly, and a private update reaches only the granted."""
    async with aiohttp.ClientSession(base_url=stack.url) as session:
        mercure = MercureClient(session)
        granted = classic_token(subscribe=["urn:doc:{id}"])
        stream = await mercure.subscribe("urn:doc:{id}", token=granted)
        try:
            for n in range(3):
                status, _ = await mercure.publish("urn:doc:1", f"m{n}", id=f"doc-{n}")
                assert status == 200
                assert (await stream.next(timeout=10)).data == f"m{n}"
            serving = [r for r in stack.replicas if await open_streams(session, r) == 1]
            assert len(serving) == 1
            serving[0].process.kill()  # the replica holding the stream dies
            serving[0].process.wait()
            assert await stream.rest() == []
            await mercure.publish("urn:doc:2", "m3", private="on")  # while it is away
            await mercure.publish("urn:other", "not selected")
            await mercure.publish("urn:doc:3", "m4")
            status, resumed, headers = await mercure.open(
                [("topic", "urn:doc:{id}")], token=granted, last_event_id=stream.last_id
            )
            assert status == 200
            assert isinstance(resumed, SSEStream)
            assert headers["Last-Event-ID"] == "doc-2"
            assert [e.data for e in await resumed.take(2)] == ["m3", "m4"]
        finally:
            mercure.close()


class _Draining:
    """A replica as one is while it drains: it answers, but refuses every stream with 503."""

    def __init__(self) -> None:
        self.port = 0
        self.refused = 0
        self._runner: web.AppRunner | None = None

    async def _events(self, request: web.Request) -> web.Response:
        self.refused += 1
        body = '{"status": 503, "title": "Service unavailable", "detail": "shutting down"}'
        return web.Response(status=503, text=body, content_type="application/problem+json")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_nginx_passes_a_stream_refused_by_a_draining_replica_to_another(
    start_hub: StartHub, redis_server: RedisServer, tmp_path: Path
) -> None:
    """EventSource gives up for good on a 503: nginx must try the next replica instead."""
    hub = start_hub(
        {
            "HUB_REDIS_URL": redis_server.url,
            "HUB_KEY_PREFIX": f"drain-{uuid.uuid4().hex[:8]}:",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    draining = _Draining()
    await draining.start()
    # In a thread: the stand-in answers nginx's start-up check on this event loop.
    proxy, url = await asyncio.to_thread(start_nginx, tmp_path, [draining, hub])
    token = mint(SUBSCRIBER_KEY, "HS256", sub="nico")
    try:
        async with aiohttp.ClientSession() as session:
            for method in ["GET", "POST"] * 3:  # round robin: half go to the draining one first
                async with session.request(
                    method, f"{url}/events", headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    assert response.status == 200, (method, await response.text())
        assert draining.refused > 0  # it was asked, and its refusal never reached a client
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.wait(timeout=10)
        await draining.stop()


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
    assert_ready_healthcheck(services["hub"])
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"services": {"x": {"deploy": {"replicas": "two"}}}})


def assert_ready_healthcheck(hub: dict[str, Any]) -> None:
    """The hub's compose healthcheck asks /readyz: ready, not only running."""
    test = hub["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert "http://127.0.0.1:8080/readyz" in " ".join(test)


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("FROM python:3.12-slim")
    assert "\nUSER hub\n" in text
    [healthcheck] = [line for line in text.splitlines() if line.strip().startswith("CMD [")][:1]
    assert "http://127.0.0.1:8080/readyz" in healthcheck
    assert "/healthz" not in text


def _run_lines(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_dockerfile_installs_the_locked_dependencies_then_the_hub_alone() -> None:
    lines = _run_lines((ROOT / "Dockerfile").read_text())
    copy_lock = lines.index("COPY requirements.lock ./")
    [locked] = [n for n, line in enumerate(lines) if "-r requirements.lock" in line]
    [hub] = [n for n, line in enumerate(lines) if "pip install" in line and " ." in line]
    assert copy_lock < locked < lines.index("COPY hub ./hub") < hub
    assert "--require-hashes" in lines[locked]
    assert "--no-deps ." in lines[hub]


def _requirement_name(text: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", text.strip())
    assert name, text
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    """requirements.lock (pip-compile --generate-hashes from pyproject.toml): every runtime
    dependency of the hub, exactly one version each, with the hashes pip checks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(dependency) for dependency in project["dependencies"]}
    text = (ROOT / "requirements.lock").read_text()
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z])", text):
        head = block.split(" \\", 1)[0].split(";", 1)[0].strip()
        if head.startswith("#") or not head:
            continue
        name, equals, version = head.partition("==")
        assert equals, f"{head}: not pinned"
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), head
        assert "--hash=sha256:" in block, f"{head}: no hash"
        pins[_requirement_name(name)] = version
    assert wanted <= set(pins), wanted - set(pins)
    # The project itself is not in it: the image installs it with --no-deps.
    assert _requirement_name(project["name"]) not in pins
    # Minimum bounds of pyproject.toml hold for the pinned versions (a stale lock fails).
    for dependency in project["dependencies"]:
        bound = re.search(r">=([0-9][0-9.]*)", dependency)
        if bound:
            pinned = pins[_requirement_name(dependency)]
            assert _release(pinned) >= _release(bound[1]), (dependency, pinned)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def test_env_example_names_every_variable_compose_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    read = set()
    for name in ("docker-compose.yml", "docker-compose.ha.yml"):
        read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / name).read_text()))
    assert read, "compose reads no variable?"
    assert named == read
    # Placeholders only: no key committed.
    assert all(line.endswith("=") for line in example.splitlines() if re.match(r"[A-Z]", line))


def test_production_config_turns_the_demo_page_off() -> None:
    settings = load_settings(ROOT / "config" / "hub.toml", environ={})
    assert settings.demo_page is False
    assert settings.demo_tokens is False
    for name in ("Dockerfile", "docker-compose.yml", "docker-compose.ha.yml"):
        assert "hub.toml" in (ROOT / name).read_text(), name


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
