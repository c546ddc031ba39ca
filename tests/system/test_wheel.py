"""The hub as a user installs it: the wheel built from this tree, installed into a fresh
virtualenv with the locked runtime dependencies only (as the Dockerfile does), and `hub serve`
run from that virtualenv, away from the source tree. About 10 s: the wheel builds in ~3 s,
and the dependencies install from the machine's package index in ~5 s."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY
from tests.support.paths import ROOT
from tests.support.redis_server import free_port
from tests.support.sse_client import SSEStream

DISTRIBUTION = "sse-hub"  # `hub` on the package index is another project


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "-q", "-w", str(out), str(ROOT), cwd=out)
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with nothing but the locked dependencies and the wheel (no pip of its own:
    this interpreter's pip installs into it)."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = str(home / "bin" / "python")
    lock = str(ROOT / "requirements.lock")
    _pip("--python", python, "install", "-q", "--require-hashes", "-r", lock, cwd=home)
    _pip("--python", python, "install", "-q", "--no-deps", str(wheel), cwd=home)
    return home


def test_the_wheel_holds_the_package_its_data_and_the_command(wheel: Path) -> None:
    assert wheel.name.startswith("sse_hub-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert f"\nName: {DISTRIBUTION}\n" in archive.read(metadata).decode()
        assert "hub = hub.cli:main" in archive.read(entry_points).decode()
    for data in ("static/index.html", "broker/lua/publish.lua", "broker/lua/history.lua"):
        assert f"hub/{data}" in names, data
    assert "hub/py.typed" in names
    assert {name.split("/")[0] for name in names if not name.startswith("sse_hub-")} == {"hub"}


def _run(venv: Path, *command: str) -> str:
    result = subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        cwd=venv,  # not the source tree: `import hub` must find the installed package
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_installed_package_is_the_wheels_with_its_lua_scripts(venv: Path) -> None:
    code = (
        "import importlib.metadata as m, importlib.resources as r, hub; "
        "print(hub.__file__); print(m.version('sse-hub')); "
        "print(r.files('hub.broker').joinpath('lua/publish.lua').read_text().count('XADD') > 0)"
    )
    where, version, lua = _run(venv, "python", "-c", code).split()
    assert where.startswith(str(venv)), where
    assert version == __import__("hub").__version__
    assert lua == "True"
    assert _run(venv, "hub", "--version").strip().endswith(version)


@pytest.fixture
def served(venv: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HUB_HOST": "127.0.0.1",
        "HUB_PORT": str(port),
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
    }
    log = venv / f"hub-{port}.err"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [str(venv / "bin" / "hub"), "serve"],
            cwd=venv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


async def _ready(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def test_hub_serve_from_the_installed_wheel(served: str) -> None:
    """The embedded broker: health, the demo page (a static file of the wheel), and a
    publish delivered on an open stream."""
    async with aiohttp.ClientSession() as session:
        await _ready(session, served)
        async with session.get(f"{served}/readyz") as response:
            assert response.status == 200
        async with session.get(f"{served}/") as page:
            assert page.status == 200
            assert "text/html" in page.headers["Content-Type"]
            assert "<html" in (await page.text()).lower()
        token = mint(SUBSCRIBER_KEY, "HS256", sub="wheel")
        response = await session.get(
            f"{served}/events", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200
        stream = SSEStream(response)
        await stream.wait_open()
        publisher = mint(PUBLISHER_KEY, "HS256", sub="t", publish=["*"])
        body = {"users": ["wheel"], "data": "from the wheel"}
        headers = {"Authorization": f"Bearer {publisher}"}
        async with session.post(f"{served}/publish", json=body, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
        assert (await stream.next()).data == "from the wheel"
        stream.close()
        async with session.get(f"{served}/metrics") as metrics:
            assert "process_resident_memory_bytes" in await metrics.text()
