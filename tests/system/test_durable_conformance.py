"""The Durable Streams protocol's own conformance suite (npm
`@durable-streams/server-conformance-tests`, run through its programmatic entry under
vitest) against `hub serve`, with a publisher token in every request: every test it
runs passes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.paths import ROOT

CLIENTS = ROOT / "tests" / "clients"
VITEST = CLIENTS / "node_modules" / ".bin" / "vitest"
# Long-poll reads wait this long for data: the suite waits out several of them.
LONG_POLL_SECONDS = 2

pytestmark = pytest.mark.timeout(600)


def _run_suite(base_url: str, token: str, report: Path) -> dict[str, list[str]]:
    env = {
        **os.environ,
        "DS_BASE_URL": base_url,
        "DS_TOKEN": token,
        "DS_LONG_POLL_MS": str(LONG_POLL_SECONDS * 1000 + 3000),
    }
    subprocess.run(
        [str(VITEST), "run", "--config", "durable/vitest.config.mjs", "--reporter=json",
         f"--outputFile={report}"],
        cwd=CLIENTS, env=env, capture_output=True, timeout=540, check=False,
    )  # fmt: skip
    results: dict[str, list[str]] = {}
    for suite in json.loads(report.read_text())["testResults"]:
        for test in suite["assertionResults"]:
            results.setdefault(test["status"], []).append(test["fullName"])
    return results


def _redis_url(broker: str, request: pytest.FixtureRequest) -> str:
    if broker == "redis":
        return str(request.getfixturevalue("redis_server").url)
    if broker == "cluster":
        return str(request.getfixturevalue("shared_cluster").seed_url)
    if broker == "sentinel":
        return str(request.getfixturevalue("shared_sentinel").url)
    return ""


@pytest.mark.parametrize("broker", ["memory", "redis", "cluster", "sentinel"])
def test_every_conformance_test_passes(
    start_hub: StartHub, tmp_path: Path, broker: str, request: pytest.FixtureRequest
) -> None:
    hub = start_hub(
        {
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
            "HUB_REDIS_URL": _redis_url(broker, request),
            "HUB_KEY_PREFIX": f"dc{uuid.uuid4().hex[:8]}:",
            "HUB_DURABLE_STREAMS": "true",
            "HUB_DURABLE_STREAMS_LONG_POLL_TIMEOUT": str(LONG_POLL_SECONDS),
            "HUB_ACCESS_LOG": "false",
        }
    )
    token = mint(PUBLISHER_KEY, "HS256", sub="conformance", publish=["stream:*"])
    results = _run_suite(hub.url, token, tmp_path / "report.json")
    assert results.get("failed", []) == []
    # The suite's own skips (tests it keeps for other servers' features) and nothing else.
    assert len(results.get("passed", [])) >= 330, len(results.get("passed", []))
