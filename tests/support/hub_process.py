"""`hub serve` as a child process, for tests of the real server's lifecycle and footprint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.redis_server import free_port


class HubProcess:
    def __init__(self, tmp_path: Path, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout = tmp_path / f"hub-{self.port}.out"
        self.stderr = tmp_path / f"hub-{self.port}.err"
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HUB_HOST": "127.0.0.1",
            "HUB_PORT": str(self.port),
            **env,
        }
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", "serve"], env=full_env, stdout=out, stderr=err
            )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr.read_text()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("hub did not become healthy")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def rss_kib(self) -> int:
        """Resident memory of the hub process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")
