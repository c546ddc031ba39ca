"""The npm SSE clients people subscribe with, run as examples/clients/*.mjs show them, against
`hub serve` on Redis: npm `eventsource` 4.x (GET /events) and `@microsoft/fetch-event-source`
(POST /events). Each resumes exactly with its last id after a restart of its own, and by
itself across a hub that crashes or drains (also before the first event), and never hands
the app an event with empty data while heartbeats flow.

The examples import their library by name, and Node resolves an ES module's imports from
the module's own directory (NODE_PATH is not read for them): each test copies the example
into its tmp_path beside a `node_modules` link to tests/clients/node_modules, where
`npm ci --prefix tests/clients` installs the pinned versions.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.redis_server import RedisServer, free_port
from tests.support.sse_client import SSEStream

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "clients"
NODE_MODULES = ROOT / "tests" / "clients" / "node_modules"
NODE = shutil.which("node")
LIBRARIES = ["eventsource", "fetch-event-source"]
INSTALL = "apt-get install -y nodejs npm && npm ci --prefix tests/clients"
PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}
TOPIC = "news"
WAIT = 20.0  # seconds any one condition may take on a loaded machine
PINGS = 5  # heartbeats a stream sees while the app must see no event for them


@dataclass
class Hubs:
    """`hub serve` processes of one test on one Redis: `main` on a fixed port, restarted
    there; `other` on the same history, for publishing while `main` is down."""

    env: dict[str, str]
    port: int
    main: HubProcess
    other: HubProcess
    start_hub: StartHub
    session: aiohttp.ClientSession

    def restart(self) -> None:
        self.main = self.start_hub(self.env, self.port)

    async def publish(self, hub: HubProcess, data: dict[str, Any], channel: str) -> None:
        kind, _, name = channel.partition(":")
        body = {f"{kind}s": [name], "data": data}
        url = f"{hub.url}/publish"
        async with self.session.post(url, json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200, await answer.text()

    async def wait_subscribed(self, client: NodeClient) -> None:
        """Until the client's stream is open on `main` (its only one): subscribed from then on."""
        for _ in range(int(WAIT / 0.05)):
            assert client.process.returncode is None, f"node exited: {client.stderr.read_text()}"
            if await self._open_streams() == 1:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no stream open on the hub: {client.stderr.read_text()}")

    async def _open_streams(self) -> int:
        async with self.session.get(f"{self.main.url}/metrics") as answer:
            text = await answer.text()
        match = re.search(r"^hub_open_streams (\S+)$", text, re.MULTILINE)
        assert match, text
        return int(float(match.group(1)))


class NodeClient:
    """One run of an example: its stdout read as JSON lines, one per event the app got."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.events: list[dict[str, str]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))
            self._arrived.set()
        self._arrived.set()  # the process ended: waiters look at why

    async def wait_for(self, count: int) -> list[dict[str, str]]:
        """Every event the app got, once there are at least `count`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(self.events) < count:
            assert self.process.returncode is None, f"node exited: {self.stderr.read_text()}"
            assert loop.time() < deadline, (
                f"{len(self.events)} of {count} events: {self.events}\n{self.stderr.read_text()}"
            )
            self._arrived.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        return list(self.events)

    async def wait_exit(self) -> int:
        """The exit status, once the process has ended by itself."""
        async with asyncio.timeout(WAIT):
            return await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self._reader


StartClient = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    if NODE is None or not (NODE_MODULES / ".package-lock.json").exists():
        pytest.fail(f"node or the npm client libraries are not installed: {INSTALL}")
    directory = tmp_path / "clients"
    directory.mkdir()
    (directory / "node_modules").symlink_to(NODE_MODULES)
    for library in LIBRARIES:
        shutil.copy(EXAMPLES / f"{library}.mjs", directory)
    return directory


@pytest.fixture
def user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def start_client(node_dir: Path, library: str, user: str) -> AsyncIterator[StartClient]:
    """Runs the library's example as a user would (killed at teardown if still running)."""
    granted = mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=[TOPIC])
    started: list[NodeClient] = []

    async def start(hub: HubProcess, last_event_id: str = "", token: str = granted) -> NodeClient:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HUB_URL": hub.url,
            "HUB_SUBSCRIBER_TOKEN": token,
            "HUB_TOPICS": TOPIC,
            "HUB_LAST_EVENT_ID": last_event_id,
        }
        stderr = node_dir / f"{library}-{len(started)}.err"
        with stderr.open("wb") as err:
            assert NODE is not None
            process = await asyncio.create_subprocess_exec(
                NODE,
                f"{library}.mjs",
                cwd=node_dir,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        started.append(NodeClient(process, stderr))
        return started[-1]

    yield start
    for client in started:
        await client.stop()


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def hubs(start_hub: StartHub, redis_server: RedisServer) -> AsyncIterator[Hubs]:
    env = {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": f"node{uuid.uuid4().hex[:8]}:",  # this test's own history
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "HUB_HEARTBEAT_INTERVAL": "0.2",
        "HUB_RETRY_MS": "200",
    }
    port = free_port()
    # A connection per request: none kept to a hub process that a test then stops.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield Hubs(env, port, start_hub(env, port), start_hub(env), start_hub, session)


def _datas(events: list[dict[str, str]]) -> list[Any]:
    return [json.loads(event["data"]) for event in events]


def _assert_app_events(events: list[dict[str, str]], expected: list[dict[str, Any]]) -> None:
    """Exactly the published events, in order, each once, as `message` with an id."""
    empty = [event for event in events if event["data"] == ""]
    assert not empty, f"the app was handed events with empty data: {empty}"
    assert _datas(events) == expected
    assert {event["event"] for event in events} == {"message"}
    ids = [event["id"] for event in events]
    assert all(ids)
    assert len(set(ids)) == len(ids)


def _batch(name: str, count: int) -> list[dict[str, Any]]:
    return [{"batch": name, "n": n, "text": f"{name} {n} \u00e9\u2603"} for n in range(count)]


async def _subscribed_and_received(
    hubs: Hubs, start_client: StartClient, user: str
) -> tuple[NodeClient, list[dict[str, Any]], list[dict[str, Any]]]:
    """A client subscribed to the main hub that has received a first batch of two: the
    client, the batch, and the events it saw."""
    client = await start_client(hubs.main)
    await hubs.wait_subscribed(client)
    first = _batch("first", 2)
    for data in first:
        await hubs.publish(hubs.main, data, f"user:{user}")
    seen = await client.wait_for(2)
    _assert_app_events(seen, first)
    return client, first, seen


async def test_resumes_from_its_last_id_after_the_client_restarts(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    client, _, seen = await _subscribed_and_received(hubs, start_client, user)

    await client.stop()
    missed = _batch("missed", 3)
    for data in missed:  # to the topic: the resumed stream asks for it again
        await hubs.publish(hubs.main, data, f"topic:{TOPIC}")
    resumed = await start_client(hubs.main, seen[-1]["id"])
    fence = {"fence": True}
    await hubs.publish(hubs.main, fence, f"topic:{TOPIC}")
    # The fence comes after anything else the topic would deliver: no extra, no duplicate.
    _assert_app_events(await resumed.wait_for(4), [*missed, fence])


async def test_a_resumed_client_reconnects_from_its_newest_id(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    first = _batch("first", 2)
    for data in first:
        await hubs.publish(hubs.main, data, f"user:{user}")
    # Resuming from the first event: the query (eventsource) or the body (fetch-event-source)
    # says so on every reconnect too, and the Last-Event-ID header the library adds must win.
    client = await start_client(hubs.main, await _first_id(hubs, user))
    _assert_app_events(await client.wait_for(1), first[1:])

    hubs.main.process.kill()
    hubs.main.process.wait()
    hubs.restart()
    later = {"later": True}
    await hubs.publish(hubs.main, later, f"user:{user}")
    _assert_app_events(await client.wait_for(2), [first[1], later])
    assert client.process.returncode is None


async def _first_id(hubs: Hubs, user: str) -> str:
    """The cursor of the user's first event, as a stream that replays history hands it out."""
    token = mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=[TOPIC])
    url = f"{hubs.main.url}/events?topic={TOPIC}&lastEventId=earliest"
    async with hubs.session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
        event = await SSEStream(response).next(timeout=WAIT)
    return event.id


async def test_reconnects_by_itself_across_a_hub_crash(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    client, first, _ = await _subscribed_and_received(hubs, start_client, user)

    hubs.main.process.kill()  # the connection drops under the client
    hubs.main.process.wait()
    missed = _batch("missed", 3)
    for data in missed:  # while the client has no hub to reconnect to
        await hubs.publish(hubs.other, data, f"user:{user}")
    hubs.restart()
    fence = {"fence": True}
    await hubs.publish(hubs.main, fence, f"user:{user}")
    _assert_app_events(await client.wait_for(6), [*first, *missed, fence])
    assert client.process.returncode is None


async def test_a_reconnect_before_the_first_event_resumes_from_the_opening(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    client = await start_client(hubs.main)
    await hubs.wait_subscribed(client)
    # A drain ends the stream cleanly after its opening (`hub.open` with the cursor): the
    # only id the client holds when it reconnects.
    hubs.main.process.send_signal(signal.SIGTERM)
    assert hubs.main.process.wait(timeout=WAIT) == 0
    missed = _batch("missed", 3)
    for data in missed:
        await hubs.publish(hubs.other, data, f"user:{user}")
    hubs.restart()
    fence = {"fence": True}
    await hubs.publish(hubs.main, fence, f"user:{user}")
    _assert_app_events(await client.wait_for(4), [*missed, fence])
    assert client.process.returncode is None


async def test_heartbeats_never_reach_the_app_as_events(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    client = await start_client(hubs.main)
    await hubs.wait_subscribed(client)
    # A second stream on the same hub shows the heartbeats flowing: one timer beats every
    # open stream, the client's too.
    watcher = mint(SUBSCRIBER_KEY, "HS256", sub=f"w{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {watcher}"}
    async with hubs.session.get(f"{hubs.main.url}/events", headers=headers) as response:
        assert response.status == 200
        stream = SSEStream(response)
        for _ in range(PINGS):
            await stream.wait_comment("ping", timeout=WAIT)
    assert stream.comments == ["ping"] * PINGS
    fence = {"fence": True}
    await hubs.publish(hubs.main, fence, f"user:{user}")
    # Only the fence: no event with empty data (nor `hub.open`) before it.
    _assert_app_events(await client.wait_for(1), [fence])


async def test_a_refused_stream_stops_the_client_naming_the_status(
    hubs: Hubs, start_client: StartClient, user: str
) -> None:
    # A topic the token does not grant: 403, the same answer on every try.
    ungranted = mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=["sport"])
    client = await start_client(hubs.main, token=ungranted)
    await client.wait_exit()
    assert "403" in client.stderr.read_text()
    assert client.events == []
