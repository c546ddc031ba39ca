"""`make run` sets up only what the hub needs to run; `make test` and the other development
targets add the development tools. Read from what `make -n` would do on a fresh machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# Development tools that must never be what `make run` installs.
DEV_TOOLS = {"pytest", "playwright", "matplotlib", "mypy", "ruff", "schemathesis", "hypothesis"}

pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")


def _planned(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run with the virtualenv at `venv` (none there yet)."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
        cwd=ROOT,
        # Run from inside `make test`, the outer make's flags would reach this one.
        env={k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def _installs(commands: list[str]) -> list[str]:
    return [line for line in commands if " pip install " in line and "--upgrade pip" not in line]


def test_make_run_installs_the_runtime_alone(tmp_path: Path) -> None:
    commands = _planned("run", tmp_path / "venv")
    assert commands[0] == f"python3 -m venv {tmp_path / 'venv'}"
    [install] = _installs(commands)
    assert install.endswith("pip install -q -e ."), install
    assert commands[-1].endswith("/bin/hub serve")


@pytest.mark.parametrize("target", ["test", "lint", "test-fast", "bench"])
def test_development_targets_install_the_dev_extras(tmp_path: Path, target: str) -> None:
    commands = _planned(target, tmp_path / "venv")
    assert commands[0] == f"python3 -m venv {tmp_path / 'venv'}"  # one command on a fresh machine
    [install] = _installs(commands)
    assert install.endswith('pip install -q -e ".[dev]"'), install


def test_the_runtime_dependencies_hold_no_development_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        requirement.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()
        for requirement in project["dependencies"]
    }
    assert not names & DEV_TOOLS, names & DEV_TOOLS
    dev = {
        requirement.split(">")[0].split("[")[0].strip()
        for requirement in project["optional-dependencies"]["dev"]
    }
    assert not DEV_TOOLS - dev, DEV_TOOLS - dev
