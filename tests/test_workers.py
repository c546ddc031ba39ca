"""`hub serve --workers N`: several processes on one port, sharing streams through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import StartHub
from tests.hub_process import HubProcess
from tests.redis_server import RedisServer
from tests.test_processes import PUBLISHER, _env, _open


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
    hub = start_hub(_env(redis, prefix, HUB_WORKERS="2"))
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
        streams = [await _open(session, hub, user) for user in users]
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
        stream = await _open(session, hub, "after")
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
