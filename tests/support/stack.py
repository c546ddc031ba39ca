"""What the stack tests share: the project root, nginx run with config/nginx.conf in front
of local hub replicas, the Compose schema, and a replica's open-stream count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiohttp

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY
from tests.support.paths import ROOT
from tests.support.redis_server import free_port

PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}


class Upstream(Protocol):
    """A server nginx passes requests to: a hub replica, or a stand-in for one."""

    @property
    def port(self) -> int: ...


def nginx_config(tmp_path: Path, port: int, replicas: Sequence[Upstream]) -> Path:
    """config/nginx.conf with the replicas' local addresses and a private port and paths."""
    text = (ROOT / "config" / "nginx.conf").read_text()
    servers = "".join(f"server 127.0.0.1:{r.port} max_fails=1 fail_timeout=5s;\n" for r in replicas)
    for old, new in [
        ("server hub:8080 max_fails=1 fail_timeout=5s;\n", servers),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("/tmp/nginx", str(tmp_path / "nginx")),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text = "user root;\n" + text  # workers may write the temp paths under tmp_path
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    return path


async def open_streams(session: aiohttp.ClientSession, replica: HubProcess) -> float:
    async with session.get(f"{replica.url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("hub_open_streams "):
                return float(line.split()[1])
    raise AssertionError("no hub_open_streams")


def compose_schema() -> dict[str, object]:
    wheels = sorted((ROOT / ".venv" / "compose-schema").glob("docker_compose-*.whl"))
    assert wheels, "the Compose schema is fetched by `make install`"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        schema: dict[str, object] = json.loads(wheel.read("compose/config/compose_spec.json"))
    return schema


def start_nginx(
    tmp_path: Path, replicas: Sequence[Upstream]
) -> tuple[subprocess.Popen[bytes], str]:
    """nginx with config/nginx.conf in front of `replicas`, answering; and its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (apt-get install -y nginx)"
    port = free_port()
    with (tmp_path / "nginx.err").open("wb") as errors:
        proxy = subprocess.Popen(
            [nginx, "-c", str(nginx_config(tmp_path, port, replicas)), "-g", "daemon off;"],
            stderr=errors,
        )
    deadline = time.monotonic() + 10
    try:
        while subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{port}/healthz"], capture_output=True, check=False
        ).returncode:
            assert proxy.poll() is None, (tmp_path / "nginx.err").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    except BaseException:
        proxy.kill()
        proxy.wait(timeout=10)
        raise
    return proxy, f"http://127.0.0.1:{port}"
