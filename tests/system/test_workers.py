"""`hub serve --workers N`: several processes on one port, sharing streams through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, StartHub
from tests.support.processes import PUBLISHER, hub_env, open_stream
from tests.support.redis_server import RedisServer
from tests.support.serve import run_hub
from tests.support.sse_client import SSEStream


def _children(hub: HubProcess) -> set[int]:
    pid = hub.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


def _until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _workers(start_hub: StartHub, redis: RedisServer, prefix: str) -> HubProcess:
    """A hub with two workers, both serving: /healthz answers once one of them listens, and
    until the other does, the kernel gives it no connection."""
    hub = start_hub(hub_env(redis, prefix, HUB_WORKERS="2"))
    _until(lambda: len(_children(hub)) == 2, "two workers")
    _until(lambda: hub.stderr.read_text().count("listening on") == 2, "both workers listening")
    return hub


async def test_workers_share_the_port_and_deliver_across_processes(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = _workers(start_hub, redis_server, "workers:")
    workers = _children(hub)
    before = {pid: _sockets(pid) for pid in workers}
    users = [f"w{n}" for n in range(16)]
    async with aiohttp.ClientSession() as session:
        streams = [await open_stream(session, hub, user) for user in users]
        grown = {pid: _sockets(pid) - before[pid] for pid in workers}
        # The kernel spreads connections over both listeners (all on one: p = 2**-15).
        assert all(count > 0 for count in grown.values()), grown
        body = {"users": users, "data": "to every worker"}
        async with session.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200
        for stream in streams:
            assert (await stream.next()).data == "to every worker"
            stream.close()


async def test_a_dead_worker_is_replaced_and_sigterm_stops_them_all(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = _workers(start_hub, redis_server, "workers2:")
    first = _children(hub)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    _until(
        lambda: len(_children(hub)) == 2 and victim not in _children(hub), "a replacement worker"
    )
    async with aiohttp.ClientSession() as session:
        stream = await open_stream(session, hub, "after")
        body = {"users": ["after"], "data": "still served"}
        async with session.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200
        assert (await stream.next()).data == "still served"
        workers = _children(hub)
        hub.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(hub.process.wait, 30)
        stream.close()
    assert hub.process.returncode == 0
    assert all(_gone(pid) for pid in workers), "every worker ended with the parent"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_workers_end_when_the_supervisor_is_killed(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = _workers(start_hub, redis_server, "workers3:")
    workers = _children(hub)
    assert len(workers) == 2
    # Both serving (not still starting up, `_workers` waited) when their supervisor dies.
    hub.process.kill()  # SIGKILL: the supervisor forwards nothing
    hub.process.wait(30)
    _until(lambda: all(_gone(pid) for pid in workers), "the orphaned workers to end", 60)


def test_a_worker_that_cannot_start_stops_the_hub_with_one_line(redis_server: RedisServer) -> None:
    """Checked before the workers fork: not one failure per worker, restarted forever."""
    result = run_hub(
        "serve",
        "--workers",
        "2",
        HUB_REDIS_URL=redis_server.url,
        HUB_SUBSCRIBER_JWT_ALGORITHM="RS256",
        HUB_SUBSCRIBER_JWT_KEY="garbage",
        HUB_PUBLISHER_JWT_KEY=PUBLISHER_KEY,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("hub: bad setting: HUB_SUBSCRIBER_JWT_KEY: RS256 needs a PEM"), line


# A supervisor whose worker 0 always fails as it starts, worker 1 serving (sleeping).
_FAILING_WORKER = """
import sys, time
from hub import logs
from hub.workers import Supervisor

def worker(number: int) -> int:
    if number == 0:
        raise RuntimeError("no start today")
    time.sleep(60)
    return 0

logs.setup("INFO", "text")
sys.exit(Supervisor(2, worker, grace=1, pauses=(0.05,) * 4).run())
"""


def test_a_worker_dying_as_it_starts_five_times_in_a_row_stops_the_hub() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FAILING_WORKER],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    log = result.stderr
    # Each death says why (before, os._exit ended the worker without a word)...
    assert log.count("RuntimeError: no start today") == 5, log
    assert log.count("; restarting") == 4, log
    # ...and the fifth gives up, in one line, after stopping the serving worker.
    stopping = [line for line in log.splitlines() if "in a row" in line]
    assert len(stopping) == 1, log
    assert stopping[0].endswith(
        "worker 0 exited with 1 as it started, 5 times in a row: stopping the hub"
    )
    assert log.count("worker 1 started") == 1


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(hub: HubProcess) -> Samples:
    """One scrape over a new connection: any worker may answer it."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(f"{hub.url}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _until_scraped(
    hub: HubProcess, check: Callable[[Samples], bool], what: str, timeout: float = 20
) -> Samples:
    deadline = time.monotonic() + timeout
    while not check(samples := await _scrape(hub)):
        assert time.monotonic() < deadline, f"{what}: {samples}"
        await asyncio.sleep(0.1)
    return samples


async def test_one_scrape_covers_every_worker(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = _workers(start_hub, redis_server, "workers4:")
    workers = _children(hub)
    users = [f"m{n}" for n in range(16)]
    async with aiohttp.ClientSession() as session:
        streams = [await open_stream(session, hub, user) for user in users]
        on = {pid: _sockets(pid) for pid in workers}  # streams spread over both workers
        # Each publish on its own connection: the kernel spreads them over both workers.
        published = 30
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
            for n in range(published):
                body = {"users": [users[n % len(users)]], "data": n}
                async with fresh.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
                    assert answer.status == 200
        for n, stream in enumerate(streams):
            expected = [str(m) for m in range(n, published, len(users))]
            assert [event.data for event in await stream.take(len(expected))] == expected
        # Whichever worker answers, every scrape counts both workers' publishes, streams and
        # deliveries (written to the shared files within a second).
        for _ in range(6):
            samples = await _until_scraped(
                hub,
                lambda s: _total(s, "hub_events_delivered_total") == published,
                "deliveries of both workers",
            )
            assert _total(samples, "hub_publishes_total", outcome="ok") == published
            assert _total(samples, "hub_publish_latency_seconds_count") == published
            assert _total(samples, "hub_open_streams") == len(users)
            # Process metrics: one series per live worker, by pid.
            for name in ("process_resident_memory_bytes", "process_cpu_seconds_total"):
                assert _pids(samples, name) == workers, name
            for pid in workers:
                assert _total(samples, "process_open_fds", pid=str(pid)) >= on[pid]
        # A worker killed: its streams end and no longer count (livesum), its publishes do.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _until(lambda: victim not in _children(hub) and len(_children(hub)) == 2, "replaced")
        body = {"users": users, "data": "after"}
        async with session.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200
        alive = [stream for stream in streams if await _alive(stream)]
        assert 0 < len(alive) < len(users)
        samples = await _until_scraped(
            hub,
            lambda s: _total(s, "hub_open_streams") == len(alive),
            "open streams of the live workers only",
        )
        assert _total(samples, "hub_publishes_total", outcome="ok") == published + 1
        # The replacement's process metrics once it has started; none left of the dead one.
        samples = await _until_scraped(
            hub, lambda s: _pids(s, "process_open_fds") == _children(hub), "the new worker's"
        )
        assert victim not in _pids(samples, "process_cpu_seconds_total")
        for stream in streams:
            stream.close()


def _pids(samples: Samples, name: str) -> set[int]:
    return {int(dict(labels)["pid"]) for (n, labels) in samples if n == name}


async def _alive(stream: SSEStream) -> bool:
    try:
        return (await stream.next()).data == "after"
    except EOFError:
        return False
