"""The benchmark's tooling works end to end (its figures are reported, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.paths import ROOT
from tests.support.redis_server import RedisServer


def test_a_tiny_benchmark_run_writes_json_and_markdown(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenarios",
            "idle,fanout,unicast,publish,resume,durable",
            "--streams",
            "50",
            "--fanout-streams",
            "20",
            "--users",
            "30",
            "--publishes",
            "100",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "latest.json").read_text())
    assert record["broker"] == "redis"
    results = record["results"]
    assert results["idle"]["streams"] == 50
    assert results["fanout"]["deliveries_per_hub_cpu_s"] > 0
    assert results["unicast"]["publishes_per_server_cpu_s"] > 0
    assert results["publish"]["batch_messages_per_server_cpu_s"] > 0
    assert results["resume"]["exact"] is True
    assert results["durable"]["appends_per_server_cpu_s"] > 0
    assert results["durable"]["redis_bytes_per_chunk"] > 64  # the chunk and its entry
    assert results["durable"]["live_p99_ms"] > 0
    table = (tmp_path / "latest.md").read_text()
    assert "| resume, 100 missed events (median) | exact," in table
    assert "progress" not in table
    assert "streams open" in result.stderr, "progress is shown while it runs"


def _bench(out: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--publishes", "80", "--out", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = json.loads((out / "latest.json").read_text())
    return record


def test_the_benchmark_targets_a_running_hub(
    tmp_path: Path, start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = start_hub(
        {
            "HUB_REDIS_URL": redis_server.url,
            "HUB_KEY_PREFIX": "bench-target:",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    keys = {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
    record = _bench(
        tmp_path,
        *("--url", hub.url, "--hub-pid", str(hub.process.pid), "--scenarios", "publish,resume"),
        env=keys,
    )
    assert record["target"] == hub.url
    assert record["results"]["resume"]["exact"] is True
    assert record["results"]["publish"]["publishes_per_s"] > 0
    assert hub.process.poll() is None, "a hub the benchmark did not start is left running"


def test_the_benchmark_runs_its_hub_on_a_given_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    record = _bench(tmp_path, "--redis-url", redis_server.url, "--scenarios", "resume")
    assert record["results"]["resume"]["exact"] is True
