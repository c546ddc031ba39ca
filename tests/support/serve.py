"""`hub` run as a command, for start-ups that fail (so they end)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.redis_server import free_port


def run_hub(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`hub ARGS` with `env` (and a free local port): for start-ups that fail, so they end."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HUB_HOST": "127.0.0.1",
            "HUB_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
