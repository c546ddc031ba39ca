"""The processes under test: a private redis-server and `hub serve`, pinned, measured in /proc."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def family(pid: int) -> list[int]:
    """A process and its children (the workers of `hub serve --workers N`)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for member in family(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(pid, cpus)


@dataclass
class Started:
    """The server under test: its URL, and the pids whose CPU and memory are measured."""

    url: str
    hub_pid: int
    redis_pid: int | None = None
    # What this run started (and stops); empty when targeting a running hub.
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workdir: Path | None = None
    redis_url: str | None = None  # the Redis it runs on (None: embedded)

    @property
    def pids(self) -> dict[str, int]:
        pids = {"hub": self.hub_pid}
        if self.redis_pid is not None:
            pids["redis"] = self.redis_pid
        return pids

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the hub (with its workers) and of Redis."""
        return {name: sum(map(cpu_seconds, family(pid))) for name, pid in self.pids.items()}

    def kernel_cpu(self, *names: str) -> float:
        """System CPU seconds so far of the hub and Redis together (or of those named): the
        share of server CPU spent in the kernel (socket calls, loopback TCP), out of the
        hub's reach."""
        pids = [pid for name, pid in self.pids.items() if name in names or not names]
        return sum(cpu_times(m)[1] for pid in pids for m in family(pid))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def running(url: str, hub_pid: int, redis_pid: int | None) -> Started:
    """A hub someone else started (on this machine: its pid is read in /proc)."""
    _wait_ready(url, None)
    return Started(url.rstrip("/"), hub_pid, redis_pid)


def _wait_ready(url: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise RuntimeError(f"the hub at {url} is not ready") from None
            time.sleep(0.05)


def start(
    *,
    embedded: bool,
    keys: dict[str, str],
    server_cpus: set[int] | None,
    redis_url: str | None = None,
    **settings: str,
) -> Started:
    """A hub (on `redis_url`, else its own Redis unless `embedded`), pinned to `server_cpus`."""
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    redis = None
    env = {**os.environ, **keys, "HUB_HOST": "127.0.0.1", "HUB_LOG_LEVEL": "WARNING"}
    env.update({f"HUB_{k.upper()}": v for k, v in settings.items()})
    env.pop("HUB_REDIS_URL", None)
    if redis_url:  # someone's Redis: keys of this run only, never flushed
        env["HUB_REDIS_URL"] = redis_url
        env["HUB_KEY_PREFIX"] = f"bench-{os.getpid()}-{time.time_ns()}:"
    elif not embedded:
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _pin(redis.pid, server_cpus)
        env["HUB_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    hub_port = free_port()
    env["HUB_PORT"] = str(hub_port)
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    _pin(hub.pid, server_cpus)
    url = f"http://127.0.0.1:{hub_port}"
    started = [hub] if redis is None else [hub, redis]
    try:
        _wait_ready(url, hub)
    except RuntimeError:
        Started(url, hub.pid, processes=started, workdir=workdir).stop()
        raise
    return Started(
        url, hub.pid, redis.pid if redis else None, started, workdir, env.get("HUB_REDIS_URL")
    )
