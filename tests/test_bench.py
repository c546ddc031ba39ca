"""The benchmark's tooling works end to end (its figures are reported, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_a_tiny_benchmark_run_writes_json_and_markdown(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenarios",
            "idle,fanout,unicast,resume",
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
    assert results["resume"]["exact"] is True
    table = (tmp_path / "latest.md").read_text()
    assert "| resume, 100 missed events (median) | exact," in table
    assert "progress" not in table
    assert "streams open" in result.stderr, "progress is shown while it runs"
