"""`@durable-streams/client` from npm (examples/durable: its `stream()` reader and its
`IdempotentProducer`, used as its README shows) against `hub serve` on Redis: the reader
gets every byte exactly once across a hub restart under it and a reconnect mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.paths import ROOT
from tests.support.redis_server import RedisServer, free_port

EXAMPLES = ROOT / "examples" / "durable"
NODE_MODULES = ROOT / "tests" / "clients" / "node_modules"
TOKEN = mint(PUBLISHER_KEY, "HS256", sub="app", publish=["stream:*"])

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """The example scripts beside the locked node_modules (ESM resolves packages from the
    script's own folder up)."""
    for script in EXAMPLES.glob("*.mjs"):
        (tmp_path / script.name).write_text(script.read_text())
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    return tmp_path


async def _node(scripts: Path, script: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DS_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        "node", str(scripts / script), *args, cwd=scripts, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _write(writer: asyncio.subprocess.Process, line: str) -> None:
    assert writer.stdin is not None
    assert writer.stdout is not None
    writer.stdin.write(line.encode() + b"\n")
    await writer.stdin.drain()
    async with asyncio.timeout(30):
        assert (await writer.stdout.readline()).decode().strip() == f"sent {line}"


async def _finish(writer: asyncio.subprocess.Process) -> None:
    assert writer.stdin is not None
    writer.stdin.close()
    async with asyncio.timeout(30):
        await writer.wait()


async def test_every_byte_once_across_a_restart_and_a_reconnect(
    start_hub: StartHub, redis_server: RedisServer, scripts: Path
) -> None:
    env = {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": f"dcl{uuid.uuid4().hex[:8]}:",
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "HUB_DURABLE_STREAMS": "true",
        "HUB_DURABLE_STREAMS_LONG_POLL_TIMEOUT": "2",
    }
    port = free_port()
    hub, other = start_hub(env, port), start_hub(env)  # `other`: the same Redis
    url = f"{hub.url}/v1/stream/answers/{uuid.uuid4().hex[:8]}"
    writer = await _node(scripts, "write.mjs", url.replace(hub.url, other.url), "llm-1")
    await _write(writer, "The answer")
    reader = await _node(scripts, "follow.mjs", url)
    assert reader.stdout is not None
    lines: list[dict[str, str]] = []

    async def read_until(text: str) -> None:
        assert reader.stdout is not None
        async with asyncio.timeout(40):
            while not any(text in line["text"] for line in lines):
                lines.append(json.loads(await reader.stdout.readline()))

    await read_until("The answer")
    hub.process.kill()  # the reader's hub goes away mid-stream
    hub.process.wait()
    await _write(writer, " is forty")  # while it is away, through the other replica
    hub = start_hub(env, port)
    await _write(writer, "-two.")
    await _write(writer, " [END]")
    await read_until("[END]")
    await _finish(writer)
    assert "".join(line["text"] for line in lines) == "The answer is forty-two. [END]"
    # And a reader that starts over from the offset it had after the first chunk.
    again = await _node(scripts, "follow.mjs", url, lines[0]["offset"])
    assert again.stdout is not None
    rest: list[str] = []
    async with asyncio.timeout(40):
        while not rest or "[END]" not in rest[-1]:
            rest.append(json.loads(await again.stdout.readline())["text"])
    assert "".join(rest) == " is forty-two. [END]"
    for process in (reader, again):
        if process.returncode is None:
            process.kill()
        await process.wait()
