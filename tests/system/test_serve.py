"""`hub serve` and `hub token` as real processes: start-up, first run, SIGTERM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.paths import ROOT
from tests.support.redis_server import RedisServer, free_port
from tests.support.serve import run_hub
from tests.support.sse_client import SSEStream

KEYS = {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
EXAMPLE_CONFIG = ROOT / "config" / "hub.toml"


def _token(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "token", *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


async def _open_and_receive(
    session: aiohttp.ClientSession, response: aiohttp.ClientResponse, publisher: str, user: str
) -> SSEStream:
    """The open stream `response` receives a message published to `user`."""
    stream = SSEStream(response)
    await stream.wait_open()
    async with session.post(
        "/publish",
        json={"users": [user], "data": f"hi {user}"},
        headers={"Authorization": f"Bearer {publisher}"},
    ) as answer:
        assert answer.status == 200
    assert (await stream.next()).data == f"hi {user}"
    return stream


def test_token_command_signs_with_the_configured_keys(tmp_path: Path) -> None:
    claims = jwt.decode(
        _token("--sub", "alice", "--topics", "news, room:*"), SUBSCRIBER_KEY, algorithms=["HS256"]
    )
    assert claims["sub"] == "alice"
    assert claims["topics"] == ["news", "room:*"]
    assert claims["exp"] - time.time() == pytest.approx(3600, abs=60)
    publisher = jwt.decode(
        _token("--sub", "svc", "--publisher", "--publish", "user:*"),
        PUBLISHER_KEY,
        algorithms=["HS256"],
    )
    assert publisher["publish"] == ["user:*"]
    missing = subprocess.run(
        [sys.executable, "-m", "hub", "token", "--sub", "a"],
        env={"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,  # no development keys saved here
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "HUB_SUBSCRIBER_JWT_KEY: not set, nor in ./.hub-dev-keys" in missing.stderr


async def test_sigterm_ends_open_streams_cleanly_and_exits_0(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = start_hub(
        {
            "HUB_REDIS_URL": redis_server.url,
            "HUB_KEY_PREFIX": "serve-test:",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    subscriber, publisher = _token("--sub", "sam"), _token("--sub", "p", "--publisher")
    async with aiohttp.ClientSession(hub.url) as session:
        async with asyncio.timeout(20):
            while (await session.get("/readyz")).status != 200:
                await asyncio.sleep(0.05)
        response = await session.get("/events", params={"token": subscriber})
        stream = await _open_and_receive(session, response, publisher, "sam")
        started = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        assert await stream.rest() == []
        assert not stream.aborted, "the stream must end with a clean chunked EOF"
    assert await asyncio.to_thread(hub.process.wait, 15) == 0
    assert time.monotonic() - started < 10
    log = hub.stderr.read_text()
    assert '"GET /events?token=***"' in log, log
    assert subscriber not in log, "tokens never appear in logs"


async def test_first_run_with_nothing_configured(
    start_hub: StartHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where `hub serve` runs: its development keys are saved there
    hub = start_hub({})
    out = hub.stdout.read_text()
    err = hub.stderr.read_text()
    assert "in-memory broker" in err
    assert f"generated development keys, saved to {tmp_path / '.hub-dev-keys'} (mode 0600)" in err
    saved = tmp_path / ".hub-dev-keys"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    keys = _saved_keys(saved)
    assert set(keys) == {"HUB_SUBSCRIBER_JWT_KEY", "HUB_PUBLISHER_JWT_KEY"}
    for key in keys.values():
        assert len(key) >= 64  # enough for HS512 too
        assert key not in out + err, "a key is never printed or logged"
    subscriber = re.search(r"Subscriber token[^\n]*\n\s+(\S+)", out)
    publisher = re.search(r"Publisher token[^\n]*\n\s+(\S+)", out)
    assert subscriber
    assert publisher
    assert jwt.decode(subscriber[1], keys["HUB_SUBSCRIBER_JWT_KEY"], algorithms=["HS256"])
    async with aiohttp.ClientSession(hub.url) as session:
        response = await session.get(
            "/events", headers={"Authorization": f"Bearer {subscriber[1]}"}
        )
        (await _open_and_receive(session, response, publisher[1], "alice")).close()
        # Keys are random per directory: a token signed elsewhere is refused.
        forged = _token("--sub", "alice")
        refused = await session.get("/events", headers={"Authorization": f"Bearer {forged}"})
        assert refused.status == 401


def _saved_keys(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _terminal(
    *args: str, cwd: Path, url: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`hub ARGS` as typed in a second terminal in `cwd`: no key in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env={"PATH": os.environ.get("PATH", ""), "HUB_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stream_status(url: str, token: str) -> int:
    """The status a `GET /events` with `token` is answered with (the stream then closed)."""
    try:
        with urllib.request.urlopen(f"{url}/events?token={token}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def _streams_open(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return "\nhub_open_streams 1.0\n" in response.read().decode()


def test_a_second_terminal_uses_the_development_keys_of_hub_serve(
    start_hub: StartHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's "From a terminal" after `make run`: `hub serve` generated its keys, and
    `hub token`, `hub listen` and `hub publish` run as separate processes in the same
    directory sign with them; the next `hub serve` there reuses them."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    hub = start_hub({}, port)
    token = _terminal("token", "--user", "alice", "--topics", "news", cwd=tmp_path, url=hub.url)
    assert token.returncode == 0, token.stderr
    subscriber = token.stdout.strip()
    listener = subprocess.Popen(
        [sys.executable, "-m", "hub", "listen", "--user", "alice", "--topic", "news", "--json"],
        env={"PATH": os.environ.get("PATH", ""), "HUB_URL": hub.url},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    output = listener.stdout
    assert output is not None
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            lines = pool.submit(lambda: [output.readline() for _ in range(2)])
            deadline = time.monotonic() + 20
            while not _streams_open(hub.url):  # the listener is live
                assert time.monotonic() < deadline, "the listener's stream did not open"
                time.sleep(0.05)
            sent = _terminal("publish", "--user", "alice", "hello", cwd=tmp_path, url=hub.url)
            assert sent.returncode == 0, sent.stderr
            assert json.loads(sent.stdout) == {"user:alice": "1-0"}
            news = _terminal(
                "publish", "--topic", "news", "--json", '{"title": "Hi"}',
                cwd=tmp_path, url=hub.url,
            )  # fmt: skip
            assert news.returncode == 0, news.stderr
            received = [json.loads(line) for line in lines.result(timeout=20)]
        assert [(e["event"], e["data"]) for e in received] == [
            ("message", "hello"),
            ("message", '{"title":"Hi"}'),  # JSON data, compact
        ]
    finally:
        listener.terminate()
        listener.wait()
        output.close()
    assert _stream_status(hub.url, subscriber) == 200  # `hub token`'s token opens a stream

    keys = _saved_keys(tmp_path / ".hub-dev-keys")
    hub.process.kill()
    hub.process.wait()
    again = start_hub({}, port)  # the same keys: the token from the first run still works
    assert "using the development keys saved to" in again.stderr.read_text()
    assert _saved_keys(tmp_path / ".hub-dev-keys") == keys
    assert _stream_status(again.url, subscriber) == 200
    logs = hub.stderr.read_text() + again.stderr.read_text() + hub.stdout.read_text()
    for key in keys.values():
        assert key not in logs


def test_configured_keys_are_never_saved(
    start_hub: StartHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    start_hub(KEYS)
    assert not (tmp_path / ".hub-dev-keys").exists()
    # One key configured: only the generated one is saved, and the command line signs
    # with the configured one for its kind.
    start_hub({"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY})
    assert set(_saved_keys(tmp_path / ".hub-dev-keys")) == {"HUB_PUBLISHER_JWT_KEY"}
    assert SUBSCRIBER_KEY not in (tmp_path / ".hub-dev-keys").read_text()
    token = subprocess.run(
        [sys.executable, "-m", "hub", "token", "--sub", "a"],
        env={"PATH": os.environ.get("PATH", ""), "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert jwt.decode(token.stdout.strip(), SUBSCRIBER_KEY, algorithms=["HS256"])["sub"] == "a"


def _serve_until_listening(env: dict[str, str], cwd: Path) -> str:
    """`hub serve` with `env` and no HUB_HOST, stopped once it listens: its log."""
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve"],
        env={"PATH": os.environ.get("PATH", ""), "HUB_PORT": str(free_port()), **env},
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert hub.stderr is not None
    lines = []
    try:
        for line in hub.stderr:
            lines.append(line)
            if "listening on" in line:
                break
    finally:
        hub.send_signal(signal.SIGTERM)
        lines.extend(hub.stderr.read().splitlines(keepends=True))
        hub.wait(15)
        hub.stderr.close()
    return "".join(lines)


def test_the_development_hub_listens_on_this_machine_only(tmp_path: Path) -> None:
    log = _serve_until_listening(KEYS, tmp_path)
    assert re.search(r"INFO hub: listening on http://127\.0\.0\.1:\d+$", log, re.M), log
    assert "HUB_DEMO_TOKENS" not in log
    everywhere = _serve_until_listening({**KEYS, "HUB_HOST": "0.0.0.0"}, tmp_path)
    assert "listening on http://0.0.0.0:" in everywhere, everywhere


def test_demo_tokens_warn_at_start_up_that_anyone_can_read_and_publish(tmp_path: Path) -> None:
    log = _serve_until_listening({**KEYS, "HUB_DEMO_TOKENS": "true"}, tmp_path)
    [warning] = [line for line in log.splitlines() if "HUB_DEMO_TOKENS" in line]
    assert "WARNING hub: HUB_DEMO_TOKENS is on: anyone who can reach this hub (127.0.0.1," in (
        warning
    )
    assert "read and publish anything" in warning
    assert "never in production" in warning
    exposed = _serve_until_listening(
        {**KEYS, "HUB_DEMO_TOKENS": "true", "HUB_HOST": "0.0.0.0"}, tmp_path
    )
    assert "anyone who can reach this hub (every interface," in exposed


async def test_json_logs_have_one_line_per_stream_and_no_tokens(start_hub: StartHub) -> None:
    hub = start_hub(
        {
            "HUB_LOG_FORMAT": "json",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    subscriber, publisher = _token("--sub", "jay"), _token("--sub", "p", "--publisher")
    async with aiohttp.ClientSession(hub.url) as session:
        response = await session.get("/events", params={"token": subscriber})
        (await _open_and_receive(session, response, publisher, "jay")).close()
        async with asyncio.timeout(20):
            while "stream closed" not in hub.stderr.read_text():
                await asyncio.sleep(0.05)
    text = hub.stderr.read_text()
    assert subscriber not in text
    assert publisher not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    closed = [entry for entry in lines if entry["message"] == "stream closed"]
    assert len(closed) == 1
    assert closed[0]["user"] == "jay"
    assert closed[0]["events"] == 1
    assert closed[0]["duration_s"] >= 0
    assert closed[0]["channels"] == ["user:jay"]
    assert any(entry["logger"] == "aiohttp.access" for entry in lines)


async def test_the_access_log_can_be_turned_off(start_hub: StartHub) -> None:
    """Behind a proxy that logs requests: no access line, the stream's own line stays."""
    hub = start_hub(
        {
            "HUB_ACCESS_LOG": "false",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        }
    )
    subscriber, publisher = _token("--sub", "kim"), _token("--sub", "p", "--publisher")
    async with aiohttp.ClientSession(hub.url) as session:
        response = await session.get("/events", params={"token": subscriber})
        (await _open_and_receive(session, response, publisher, "kim")).close()
        async with session.post("/publish", data=b"{", headers={"Content-Type": "text/x"}):
            pass  # a refusal through aiohttp's own access logger, not only the front's
        async with asyncio.timeout(20):
            while "stream closed" not in hub.stderr.read_text():
                await asyncio.sleep(0.05)
    text = hub.stderr.read_text()
    assert "aiohttp.access" not in text
    assert '"POST /publish"' not in text


@pytest.mark.parametrize("url", ["redis://h:abc", "redis://h/x", "redis://h:99999", "redis://[::1"])
def test_a_malformed_redis_url_stops_serve_with_one_line(url: str) -> None:
    result = run_hub("serve", HUB_REDIS_URL=url, **KEYS)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("hub: bad setting: HUB_REDIS_URL: "), result.stderr


def test_a_port_in_use_is_one_line_naming_the_address_and_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        by_env = run_hub("serve", HUB_PORT=port, **KEYS)
        by_flags = run_hub("serve", "--host", "127.0.0.1", "--port", port, HUB_HOST="::1", **KEYS)
    assert (by_env.returncode, by_flags.returncode) == (1, 1)
    assert by_env.stderr.splitlines() == [
        f"hub: cannot listen on 127.0.0.1:{port} (HUB_HOST, HUB_PORT): address already in use"
    ]
    assert by_flags.stderr.splitlines() == [
        f"hub: cannot listen on 127.0.0.1:{port} (--host, --port): address already in use"
    ]


def test_short_or_shared_keys_stop_serve_and_token_with_the_reason() -> None:
    short = {"HUB_SUBSCRIBER_JWT_KEY": "too-short", "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
    shared = {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": SUBSCRIBER_KEY}
    for env, reason in (
        (short, "HUB_SUBSCRIBER_JWT_KEY: an HS256 key must be at least 32 bytes, not 9"),
        (shared, "HUB_PUBLISHER_JWT_KEY: must differ from HUB_SUBSCRIBER_JWT_KEY"),
    ):
        for args in (["serve"], ["token", "--sub", "alice"]):
            result = run_hub(*args, **env)
            assert result.returncode == 2, result.stderr
            [line] = result.stderr.splitlines()
            assert line.startswith(f"hub: bad setting: {reason}"), line
            assert not result.stdout


def test_option_errors_name_the_option_not_the_variable() -> None:
    port = run_hub("serve", "--port", "70000", **KEYS)
    assert port.stderr.splitlines() == ["hub: bad setting: --port: must be a TCP port (1-65535)"]
    workers = run_hub("serve", "--workers", "2", **KEYS)
    assert workers.stderr.splitlines() == [
        "hub: bad setting: --workers: several workers share streams through Redis; "
        "set HUB_REDIS_URL"
    ]
    variable = run_hub("serve", HUB_PORT="70000", **KEYS)
    assert variable.stderr.splitlines() == [
        "hub: bad setting: HUB_PORT: must be a TCP port (1-65535)"
    ]
    assert (port.returncode, workers.returncode, variable.returncode) == (2, 2, 2)


def test_a_misspelt_variable_is_named_at_start_up_with_the_closest_setting(
    start_hub: StartHub,
) -> None:
    # HUB_URL and HUB_CONFIG are the command line's own: no warning for them.
    env = {**KEYS, "HUB_HEARTBEAT_INTERVALL": "5", "HUB_URL": "http://x"}
    env["HUB_CONFIG"] = str(EXAMPLE_CONFIG)
    hub = start_hub(env)
    warnings = [line for line in hub.stderr.read_text().splitlines() if "not a setting" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith(
        "WARNING hub: HUB_HEARTBEAT_INTERVALL is not a setting and is ignored; "
        "did you mean HUB_HEARTBEAT_INTERVAL?"
    )
    token = run_hub("token", "--sub", "alice", HUB_PUBLISHER_JWT_KY="x", **KEYS)
    assert token.returncode == 0
    assert token.stderr.splitlines() == [
        "hub: warning: HUB_PUBLISHER_JWT_KY is not a setting and is ignored; "
        "did you mean HUB_PUBLISHER_JWT_KEY?"
    ]
    assert jwt.decode(token.stdout.strip(), SUBSCRIBER_KEY, algorithms=["HS256"])["sub"] == "alice"


async def test_slow_heads_are_cut_off_at_the_head_timeout_whoever_serves_the_connection(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    """Slowloris: nothing sent, half a head, and half a head after a request aiohttp
    answered are each ended at the front's head timeout (10 s), not held for an hour."""
    hub = start_hub({"HUB_REDIS_URL": redis_server.url, "HUB_KEY_PREFIX": "slow:", **KEYS})

    writers: list[asyncio.StreamWriter] = []  # kept: a writer collected closes its socket

    async def connect(*sent: bytes) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writers.append(writer)
        for data in sent:
            writer.write(data)
        await writer.drain()
        return reader

    healthz = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
    silent = await connect()
    half = await connect(b"GET /events HTTP/1.1\r\nHost: hub\r\n")
    after_aiohttp = await connect(healthz, b"GET /healthz HTTP/1.1\r\nHost: h")
    async with asyncio.timeout(60):
        answers = [await reader.read() for reader in (silent, half)]
        served = await after_aiohttp.read()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert b"Content-Type: application/problem+json\r\n" in answer
    # aiohttp answered the whole request; the half one after it was cut off by the front.
    assert served.startswith(b"HTTP/1.1 200 OK\r\n")
    assert served.count(b"HTTP/1.1") == 1
    for writer in writers:
        writer.close()
