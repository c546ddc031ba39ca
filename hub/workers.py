"""`hub serve --workers N`: N hub processes on one port (SO_REUSEPORT), kept running.

Each worker is a whole hub with its own event loop, fan-out and Redis
connections; the kernel spreads new connections over them. Workers share
nothing but Redis, which is why several need Redis. The parent only forks,
restarts a worker that died (and gives up on one that keeps dying as it
starts), and passes SIGTERM/SIGINT on for a clean drain. It also gives the
workers one metrics directory, so that any worker's /metrics covers them all
(`hub.metrics.shared_directory`), and tells it when a worker has ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from hub import metrics

log = logging.getLogger("hub")

_PR_SET_PDEATHSIG = 1


def _end_with_parent(parent: int) -> None:
    """On Linux a worker is sent SIGTERM (and drains) if the supervisor dies, even by
    SIGKILL: no orphaned workers keep the port."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the supervisor died before the call
        os.kill(os.getpid(), signal.SIGTERM)


# A worker that dies within this many seconds of starting died starting up: it is restarted
# after the next of these pauses, and once they are used up (five such deaths in a row) the
# supervisor gives up, stops the other workers and exits 1 rather than restart forever.
_QUICK_DEATH = 5.0
_RESTART_PAUSES = (1.0, 2.0, 4.0, 8.0)


class Supervisor:
    def __init__(
        self,
        count: int,
        run_worker: Callable[[int], int],
        grace: float,
        pauses: tuple[float, ...] = _RESTART_PAUSES,
    ) -> None:
        self._count = count
        self._run_worker = run_worker
        self._grace = grace
        self._pauses = pauses
        self._workers: dict[int, tuple[int, float]] = {}  # pid -> (worker number, started)
        self._stopping = False

    def _fork(self, number: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: default signal handling, then a whole hub
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _end_with_parent(parent)
            code = 1
            try:
                code = self._run_worker(number)
            except Exception:  # os._exit below prints nothing: say why the worker ended
                log.exception("worker %d failed", number)
            finally:
                os._exit(code)
        self._workers[pid] = (number, time.monotonic())
        log.info("worker %d started (pid %d)", number, pid)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """0 once stopped by SIGTERM or SIGINT; 1 if a worker kept dying as it started."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        with metrics.shared_directory() as directory:
            return self._supervise(directory)

    def _supervise(self, metrics_directory: str) -> int:
        for number in range(self._count):
            self._fork(number)
        quick_deaths: dict[int, int] = {}  # worker number -> quick deaths in a row
        gave_up = False
        deadline: float | None = None
        while self._workers:
            if self._stopping and deadline is None:
                deadline = time.monotonic() + self._grace + 5
            if deadline is not None and time.monotonic() > deadline:
                for pid in self._workers:
                    os.kill(pid, signal.SIGKILL)  # did not drain in time
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.2)
                continue
            number, started = self._workers.pop(pid)
            metrics.worker_ended(pid, metrics_directory)
            if self._stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            quick = time.monotonic() - started < _QUICK_DEATH
            deaths = quick_deaths[number] = (quick_deaths.get(number, 0) + 1) if quick else 0
            if deaths > len(self._pauses):
                log.error(
                    "worker %d exited with %d as it started, %d times in a row: stopping the hub",
                    number,
                    code,
                    deaths,
                )
                gave_up = True
                self._stop(signal.SIGTERM, None)
                continue
            log.error("worker %d (pid %d) exited with %d; restarting", number, pid, code)
            time.sleep(self._pauses[deaths - 1] if deaths else 0.0)
            if not self._stopping:
                self._fork(number)
        return 1 if gave_up else 0
