"""docker-compose.ha.yml's topology as local processes: a Redis primary, 2 replicas and 3
sentinels (tests/redis_sentinel.py), two `hub serve` replicas that find the primary through
the sentinels with the compose file's HUB_REPLICAS_ACK, and nginx with config/nginx.conf in
front; plus the compose file validated against the Compose specification's schema, and its
config templates run by redis-server and redis-sentinel."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.paths import ROOT
from tests.support.redis_cluster import admin, call, wait_until
from tests.support.redis_sentinel import SentinelSetup
from tests.support.redis_server import free_port
from tests.support.sse_client import Event, SSEStream
from tests.support.stack import PUBLISHER, compose_schema, open_streams, start_nginx

COMPOSE = ROOT / "docker-compose.ha.yml"


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return compose


def _services(compose: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {name: s for name, s in compose["services"].items() if name.startswith(prefix)}


def _script(service: dict[str, Any]) -> str:
    """The shell line a data node or sentinel starts with (sh -c '...')."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"], command
    return str(command[2])


def test_ha_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    """The schema holds, and the file declares what the tests below start: the URL's form
    and master name, HUB_REPLICAS_ACK=1, 3 sentinels with quorum 2 and 2 replicas."""
    compose = _compose()
    jsonschema.Draft7Validator(compose_schema()).validate(compose)
    local = SentinelSetup(tmp_path)  # not started: only its shape is compared
    services = compose["services"]
    sentinels = _services(compose, "sentinel-")
    replicas = _services(compose, "redis-replica-")
    assert len(sentinels) == len(local.sentinels) == 3
    assert len(replicas) == len(local.nodes) - 1 == 2
    hub = services["hub"]
    addresses = ",".join(f"{name}:26379" for name in sorted(sentinels))
    master = local.master_name
    assert hub["environment"]["HUB_REDIS_URL"] == f"redis+sentinel://{addresses}/{master}"
    assert hub["environment"]["HUB_REPLICAS_ACK"] == "1"
    assert hub["deploy"]["replicas"] == 2
    assert all(hub["depends_on"][name]["condition"] == "service_healthy" for name in sentinels)
    assert services["nginx"]["depends_on"]["hub"]["condition"] == "service_healthy"
    assert "./config/nginx.conf:/etc/nginx/hub.conf:ro" in services["nginx"]["volumes"]
    assert services["nginx"]["ports"] == ["8080:8080"]

    # Each node runs from its own copy of a template, in its own volume, and announces its
    # service name (what the sentinels hand out to the hub).
    volumes = set()
    for name, service in {"redis-primary": services["redis-primary"], **replicas}.items():
        script = _script(service)
        assert "[ -f /data/redis.conf ] ||" in script
        assert f"exec redis-server /data/redis.conf --replica-announce-ip {name}" in script
        assert "./config/redis.conf:/etc/redis/redis.conf:ro" in service["volumes"]
        assert ("redis-replica.conf" in script) == (name != "redis-primary")
        volumes.add(service["volumes"][-1])
    for name, service in sentinels.items():
        script = _script(service)
        assert "[ -f /data/sentinel.conf ] || cp /etc/redis/sentinel.conf" in script
        assert f"--sentinel announce-ip {name}" in script
        assert "./config/sentinel.conf:/etc/redis/sentinel.conf:ro" in service["volumes"]
        assert f"{master} | grep -q '^OK'" in service["healthcheck"]["test"][1]
        volumes.add(service["volumes"][-1])
    assert volumes == {f"{name}-data:/data" for name in [*replicas, *sentinels, "redis-primary"]}
    assert set(compose["volumes"]) == {volume.split(":")[0] for volume in volumes}
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert "healthcheck" in service
    # The hub is healthy once ready (broker answering, pub/sub live), not only running.
    check = hub["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert "http://127.0.0.1:8080/readyz" in " ".join(check)
    assert "./config/hub.toml:/etc/hub/hub.toml:ro" in hub["volumes"]

    sentinel_conf = (ROOT / "config" / "sentinel.conf").read_text()
    monitor = next(line for line in local.sentinels[0].lines if line.startswith("sentinel monitor"))
    quorum = monitor.split()[-1]  # what the local sentinels run with
    assert f"\nsentinel monitor {master} redis-primary 6379 {quorum}\n" in sentinel_conf
    assert "\nsentinel resolve-hostnames yes\n" in sentinel_conf
    assert "\nsentinel announce-hostnames yes\n" in sentinel_conf
    replica_conf = (ROOT / "config" / "redis-replica.conf").read_text()
    assert "\nreplicaof redis-primary 6379\n" in replica_conf


def _local(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_config_templates_run_as_the_compose_file_starts_them(tmp_path: Path) -> None:
    """config/redis.conf (+ config/redis-replica.conf for a replica) and config/sentinel.conf
    as the compose file's nodes copy them, with only addresses, ports, directories and the
    initial sync's delay local ("localhost" for the service names): the replica follows
    the primary, the sentinel names the primary by host name and knows the replica."""
    redis_conf = (ROOT / "config" / "redis.conf").read_text()
    replica_conf = (ROOT / "config" / "redis-replica.conf").read_text()
    sentinel_conf = (ROOT / "config" / "sentinel.conf").read_text()
    primary_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    local, announce = ["--bind", "127.0.0.1"], ["--replica-announce-ip", "localhost"]
    out: dict[str, Any] = {"capture_output": True, "check": False, "timeout": 10}
    files: list[tuple[str, str, list[str]]] = [
        (
            "primary",
            redis_conf,
            # The replica syncs at once, not after the 5 s wait for more replicas.
            ["redis-server", *local, "--repl-diskless-sync-delay", "0", *announce],
        ),
        (
            "replica",
            redis_conf
            + _local(replica_conf, [("redis-primary 6379", f"localhost {primary_port}")]),
            ["redis-server", *local, *announce],
        ),
        (
            "sentinel",
            _local(
                sentinel_conf,
                [
                    ("redis-primary 6379", f"localhost {primary_port}"),
                    ("port 26379", f"port {sentinel_port}"),
                ],
            ),
            ["redis-sentinel", *local, "--sentinel", "announce-ip", "localhost"],
        ),
    ]
    ports = {"primary": primary_port, "replica": replica_port}
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, text: str, command: list[str]) -> None:
        directory = tmp_path / name
        directory.mkdir()
        if name != "sentinel":
            text = _local(text, [("\nport 6379\n", f"\nport {ports[name]}\n")])
            text = _local(text, [("\ndir /data\n", f"\ndir {directory}\n")])
        conf = directory / f"{name}.conf"
        conf.write_text(text + f"\nlogfile {directory / 'log'}\n")
        binary = shutil.which(command[0]) or command[0]
        processes.append(subprocess.Popen([binary, str(conf), *command[1:]], cwd=directory))

    def replica_linked() -> bool:
        with admin(replica_port) as client:
            return client.info("replication").get("master_link_status") == "up"

    def sentinel_knows_the_replica() -> bool:
        with admin(sentinel_port) as client:
            known = call(client, "SENTINEL", "REPLICAS", "hub")
        return [(r["ip"], r["port"], r["flags"]) for r in known] == [
            ("localhost", str(replica_port), "slave")
        ]

    try:
        for name, text, command in files[:2]:
            start(name, text, command)
        wait_until(replica_linked, 10, "the replica follows the primary")
        # Started once the replica is linked: its first look at the primary finds it.
        start(*files[2])
        wait_until(sentinel_knows_the_replica, 15, "the sentinel knows the replica by name")
        with admin(sentinel_port) as client:
            master = call(client, "SENTINEL", "MASTER", "hub")
            assert call(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "hub") == [
                "localhost",
                str(primary_port),
            ]
        assert master["quorum"] == "2"
        assert master["down-after-milliseconds"] == "5000"
        # The compose file's healthcheck: a lone sentinel cannot fail over, so it is unhealthy.
        check = _compose()["services"]["sentinel-1"]["healthcheck"]["test"]
        assert check[0] == "CMD-SHELL"
        shell = _local(check[1], [("-p 26379", f"-p {sentinel_port}")])
        answer = subprocess.run(["sh", "-c", shell.replace(" | grep -q '^OK'", "")], **out)
        assert answer.stdout.startswith(b"NOQUORUM 1 usable"), answer
        assert subprocess.run(["sh", "-c", shell], **out).returncode == 1
    finally:
        # SIGKILL: a replica refuses SIGTERM while it writes its first AOF after the sync.
        for process in processes:
            process.kill()
            process.wait(timeout=10)


@dataclass
class HAStack:
    url: str
    replicas: list[HubProcess]
    redis: SentinelSetup


@pytest.fixture
def ha_stack(
    tmp_path: Path, start_hub: StartHub, redis_sentinel: SentinelSetup
) -> Iterator[HAStack]:
    compose_env = _compose()["services"]["hub"]["environment"]
    env = {
        "HUB_CONFIG": str(ROOT / "config" / "hub.toml"),
        "HUB_REDIS_URL": redis_sentinel.url,
        "HUB_REPLICAS_ACK": compose_env["HUB_REPLICAS_ACK"],
        "HUB_REPLICAS_ACK_TIMEOUT": compose_env["HUB_REPLICAS_ACK_TIMEOUT"],
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
    }
    replicas = [start_hub(env), start_hub(env)]
    proxy, url = start_nginx(tmp_path, replicas)
    try:
        yield HAStack(url, replicas, redis_sentinel)
    finally:
        proxy.send_signal(signal.SIGQUIT)
        proxy.wait(timeout=10)


@dataclass
class Attempt:
    number: int
    at: float
    status: int
    retry_after: str | None


@dataclass
class Run:
    """What the clients saw, with monotonic times."""

    attempts: list[Attempt] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ready: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Held while a publish is in flight: the primary is killed between two publishes, so
    # that every acknowledged one was confirmed by a replica before the kill (one in
    # flight then may reach a subscriber and be lost, which the hub tells with hub.reset).
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)

    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status != 200]


async def _browser_stream(session: aiohttp.ClientSession, url: str) -> SSEStream:
    """GET /events as EventSource sends it: the token in the cookie, no Authorization."""
    token = mint(SUBSCRIBER_KEY, "HS256", sub="nico")
    headers = {
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "Cookie": f"hub_token={token}",
    }
    response = await session.get(f"{url}/events", headers=headers)
    assert response.status == 200, await response.text()
    stream = SSEStream(response)
    await stream.wait_open()
    return stream


async def _read(stream: SSEStream, run: Run) -> None:
    while True:
        try:
            run.events.append(await stream.next(timeout=60))
        except EOFError:
            # Streams stay open through a failover (contract v1.1): no reconnect is needed.
            raise AssertionError(f"the stream ended after {len(run.events)} events") from None


async def _poll_ready(session: aiohttp.ClientSession, replica: HubProcess, run: Run) -> None:
    seen = run.ready.setdefault(replica.port, [])
    while not run.stop.is_set():
        try:
            async with session.get(
                f"{replica.url}/readyz", timeout=aiohttp.ClientTimeout(total=3)
            ) as answer:
                seen.append((time.monotonic(), answer.status))
        except (aiohttp.ClientError, TimeoutError):
            seen.append((time.monotonic(), 0))
        await asyncio.sleep(0.05)


async def _publish(session: aiohttp.ClientSession, url: str, run: Run) -> None:
    """One publisher, one message at a time; a 503 is retried after its Retry-After with
    the same Idempotency-Key until it is a 200 (anything else ends the run)."""
    number = 0
    while not run.stop.is_set():
        headers = {**PUBLISHER, "Idempotency-Key": f"ha-{number}"}
        body = {"users": ["nico"], "data": number}
        async with run.gate:
            deadline = time.monotonic() + 30
            while True:
                async with session.post(
                    f"{url}/publish",
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=15),
                ) as answer:
                    attempt = Attempt(
                        number, time.monotonic(), answer.status, answer.headers.get("Retry-After")
                    )
                    run.attempts.append(attempt)
                    text = await answer.text()
                if attempt.status == 200:
                    break
                assert attempt.status == 503, f"publish {number}: {attempt.status} {text}"
                assert attempt.retry_after is not None, text
                assert attempt.retry_after.isdigit(), attempt.retry_after
                assert time.monotonic() < deadline, f"publish {number} still refused after 30 s"
                await asyncio.sleep(int(attempt.retry_after))
        run.acked.append(number)
        number += 1
        await asyncio.sleep(0.05)


async def _until(
    what: str, condition: Any, tasks: list[asyncio.Task[None]], timeout: float
) -> None:
    """Polls condition() until it holds; a client task that failed fails the test at once."""
    deadline = time.monotonic() + timeout
    while not condition():
        for task in tasks:
            if task.done():
                task.result()  # raises what the task raised
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def _after(seen: list[tuple[float, int]], moment: float) -> list[int]:
    return [status for at, status in seen if at > moment]


@pytest.mark.timeout(120)
async def test_a_primary_failover_through_nginx_loses_and_repeats_nothing_acknowledged(
    ha_stack: HAStack,
) -> None:
    """SIGKILL of the Redis primary while a browser-like stream is open on one replica and a
    publisher publishes through nginx: while the sentinels elect a new primary, publishes
    are 503s with Retry-After (never another 5xx) and each replica's /readyz is 503; once
    elected, both are 200 again with no hub restarted, and every publish answered 200 -
    retried with its Idempotency-Key - arrives on the open stream exactly once, in order,
    without a hub.reset."""
    setup, run = ha_stack.redis, Run()
    pids = [replica.process.pid for replica in ha_stack.replicas]
    async with aiohttp.ClientSession() as session:
        stream = await _browser_stream(session, ha_stack.url)
        serving = [r for r in ha_stack.replicas if await open_streams(session, r) == 1]
        assert len(serving) == 1
        tasks = [
            asyncio.create_task(_read(stream, run)),
            asyncio.create_task(_publish(session, ha_stack.url, run)),
            *(asyncio.create_task(_poll_ready(session, r, run)) for r in ha_stack.replicas),
        ]
        try:
            await _until(
                "10 publishes and both replicas ready",
                lambda: (
                    len(run.acked) >= 10
                    and all(seen and seen[-1][1] == 200 for seen in run.ready.values())
                    and len(run.ready) == 2
                ),
                tasks,
                15,
            )
            async with run.gate:
                killed_at = time.monotonic()  # taken first: nothing may fail before it
                old = await asyncio.to_thread(setup.kill_primary)
            new = await asyncio.to_thread(setup.wait_failover, old.port, 20)
            promoted_at = time.monotonic()

            def recovered() -> bool:
                refused = run.failures()
                if not refused:
                    return False
                later = [a for a in run.attempts if a.at > refused[-1].at]
                return len(later) >= 10 and all(
                    503 in _after(seen, killed_at) and seen[-1][1] == 200
                    for seen in run.ready.values()
                )

            await _until("publishes and /readyz recover after the failover", recovered, tasks, 30)
            recovered_at = time.monotonic()
            await asyncio.sleep(0.5)  # /readyz stays 200 once recovered
            run.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks[1:]), 20)
            await _until(
                "every acknowledged publish on the stream",
                lambda: len(run.events) >= len(run.acked),
                tasks[:1],
                15,
            )
            await asyncio.sleep(1)  # nothing more comes: no duplicate, no late reset
        finally:
            run.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        # Exactly once, in order, and nothing but the publishes (no hub.reset).
        timeline = [(a.number, round(a.at - killed_at, 2), a.status) for a in run.attempts]
        assert [(e.event, e.data) for e in run.events] == [
            ("message", str(n)) for n in run.acked
        ], f"publishes (number, s after the kill, status): {timeline}; events: {run.events}"
        assert len({e.id for e in run.events}) == len(run.events)
        # The stream was never cut: still the one stream on the same replica.
        assert [await open_streams(session, r) for r in ha_stack.replicas] == [
            float(r is serving[0]) for r in ha_stack.replicas
        ]
        stream.close()

    # Publishes: 200 before the kill, 503s with Retry-After only after it, 200 again after.
    refused = run.failures()
    assert refused, "no publish was refused: the failover went unseen"
    assert all(a.status == 503 and a.at > killed_at for a in refused), refused
    first_refused = refused[0].at
    back = next(a for a in run.attempts if a.at > refused[-1].at)
    # /readyz on each replica: 200 before, 503 within 2 s of the kill, 200 from recovery on.
    ready_again = []
    for port, seen in run.ready.items():
        assert {status for _, status in seen} <= {200, 503}, (port, seen)
        assert {status for at, status in seen if at < killed_at} == {200}, (port, seen)
        first_503 = next(at for at, status in seen if at > killed_at and status == 503)
        assert first_503 - killed_at < 2, f"/readyz on {port}: 503 only {first_503} s after"
        last_503 = max(at for at, status in seen if status == 503)
        assert last_503 < recovered_at, f"/readyz on {port} said 503 again after recovery"
        ready_again.append(next(at for at, status in seen if at > last_503) - killed_at)
    # No hub was restarted, and none logged a traceback.
    for replica, pid in zip(ha_stack.replicas, pids, strict=True):
        assert replica.process.poll() is None
        assert replica.process.pid == pid
        assert "Traceback" not in replica.stderr.read_text()
    assert new.port != old.port
    print(  # the measured failover, shown with -s
        f"failover: primary {old.port} killed, {new.port} named after "
        f"{promoted_at - killed_at:.2f} s; publishers refused from "
        f"{first_refused - killed_at:.2f} s to {back.at - killed_at:.2f} s "
        f"({back.at - first_refused:.2f} s, {len(refused)} 503s); "
        f"/readyz 200 again at {', '.join(f'{t:.2f}' for t in ready_again)} s; "
        f"{len(run.acked)} publishes delivered once each"
    )
