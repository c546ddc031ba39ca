"""Python SSE client libraries against `hub serve` on Redis, used as examples/clients/ shows.

For httpx-sse, sseclient-py (over requests) and aiohttp-sse-client2: the app is handed
exactly the published events, each with JSON data, and nothing else (no `hub.open`, no
heartbeat: the hub pings every second here); a subscriber that resumes with the last id
it kept receives exactly what it missed; the reconnect loop (the library's own for
aiohttp-sse-client2 when the hub ends a stream cleanly) resumes across a hub killed and
restarted, and across a hub stopped right after the stream opened, before any event.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import pytest

from examples.clients import aiohttp_sse_client2, httpx_sse, sseclient_py
from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.redis_server import RedisServer, free_port

PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}
BOUND_S = 20  # every wait for a condition ends by then


@dataclass(frozen=True)
class Received:
    event: str
    data: Any
    id: str


class Follower(Protocol):
    """One subscriber app: what it was handed, and its end."""

    received: list[Received]
    stopped: bool

    def check(self) -> None:
        """Raises what ended the subscription if it ended by itself (a bad event's data)."""

    async def stop(self) -> None:
        """Disconnects (bounded) and raises what ended the subscription, if anything did."""

    def kept(self) -> str:
        """The id the app keeps once stopped, to resume from."""


Follow = Callable[[HubProcess, str, str], Follower]
AsyncFollow = Callable[
    [str, str, list[str], str, Callable[[str, Any, str], None]], Coroutine[Any, Any, None]
]


class TaskFollower:
    """An asyncio library's `follow` as a task, cancelled to disconnect."""

    def __init__(self, follow: AsyncFollow, url: str, token: str, last_event_id: str) -> None:
        self.received: list[Received] = []
        self.stopped = False
        self.task = asyncio.create_task(follow(url, token, [], last_event_id, self._on_event))

    def _on_event(self, event: str, data: Any, event_id: str) -> None:
        self.received.append(Received(event, data, event_id))

    def check(self) -> None:
        if self.task.done() and not self.stopped:
            self.task.result()  # raises what ended it
            raise AssertionError("the subscription ended by itself")

    async def stop(self) -> None:
        self.check()
        self.stopped = True
        self.task.cancel()
        await asyncio.wait([self.task], timeout=BOUND_S)
        assert self.task.cancelled()

    def kept(self) -> str:
        return self.received[-1].id


class ThreadFollower:
    """sseclient-py's blocking `follow` in a thread, stopped through its `stop` event."""

    def __init__(self, url: str, token: str, last_event_id: str) -> None:
        self.received: list[Received] = []
        self.error: BaseException | None = None
        self.returned: str | None = None
        self.stopped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(url, token, last_event_id), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, token: str, last_event_id: str) -> None:
        try:
            self.returned = sseclient_py.follow(
                url, token, [], last_event_id, self._on_event, self._stop
            )
        except BaseException as exc:
            self.error = exc

    def _on_event(self, event: str, data: Any, event_id: str) -> None:
        self.received.append(Received(event, data, event_id))

    def check(self) -> None:
        if self.error is not None:
            raise self.error
        if not self._thread.is_alive() and not self.stopped:
            raise AssertionError("the subscription ended by itself")

    async def stop(self) -> None:
        self.check()
        self.stopped = True
        self._stop.set()  # seen within one heartbeat (1 s here)
        await asyncio.to_thread(self._thread.join, BOUND_S)
        assert not self._thread.is_alive()
        self.check()

    def kept(self) -> str:
        assert self.returned is not None
        return self.returned


LIBRARIES = ["httpx-sse", "sseclient-py", "aiohttp-sse-client2"]


@pytest.fixture(params=LIBRARIES)
async def follow(request: pytest.FixtureRequest) -> AsyncIterator[Follow]:
    """Starts subscriber apps with one library; any still running are stopped at teardown."""
    started: list[Follower] = []

    def start(hub: HubProcess, token: str, last_event_id: str) -> Follower:
        url = f"{hub.url}/events"
        follower: Follower
        if request.param == "httpx-sse":
            follower = TaskFollower(httpx_sse.follow, url, token, last_event_id)
        elif request.param == "aiohttp-sse-client2":
            follower = TaskFollower(aiohttp_sse_client2.follow, url, token, last_event_id)
        else:
            follower = ThreadFollower(url, token, last_event_id)
        started.append(follower)
        return follower

    yield start
    for follower in started:  # a test that failed left it running: end it, bounded
        if not follower.stopped:
            with contextlib.suppress(Exception):  # the test has reported the failure
                await follower.stop()


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    return {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": "clients:",
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "HUB_HEARTBEAT_INTERVAL": "1",
        "HUB_RETRY_MS": "300",
    }


@pytest.fixture
def user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def token(user: str) -> str:
    return mint(SUBSCRIBER_KEY, "HS256", sub=user)


async def start(start_hub: StartHub, env: dict[str, str], port: int | None = None) -> HubProcess:
    hub: HubProcess = await asyncio.to_thread(start_hub, env, port)
    return hub


async def publish(hub: HubProcess, user: str, data: dict[str, Any]) -> None:
    body = {"users": [user], "event": "note", "data": data}
    url = f"{hub.url}/publish"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=PUBLISHER) as answer,
    ):
        assert answer.status == 200, await answer.text()


async def open_streams(hub: HubProcess) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/metrics") as answer:
        text = await answer.text()
    for line in text.splitlines():
        if line.startswith("hub_open_streams "):
            return float(line.split()[1])
    raise AssertionError("no hub_open_streams in /metrics")


async def until_open(hub: HubProcess, follower: Follower, streams: float = 1) -> None:
    """Waits until the hub counts that many open streams (the follower is subscribed)."""
    for _ in range(BOUND_S * 20):
        follower.check()
        if await open_streams(hub) == streams:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hub never had {streams} open streams")


async def until_received(follower: Follower, count: int) -> None:
    for _ in range(BOUND_S * 20):
        follower.check()
        if len(follower.received) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"received {follower.received}, waited for {count}")


def notes(*numbers: int) -> list[dict[str, Any]]:
    return [{"n": n, "text": f"note {n}: é ✓\nsecond line"} for n in numbers]


async def assert_exactly(
    follower: Follower, hub: HubProcess, user: str, expected: list[dict[str, Any]]
) -> None:
    """The follower was handed exactly `expected`, in order, and nothing else.

    A last note published now is the last one handed over: anything else (a duplicate,
    a ping or `hub.open` as an event) would have come before it.
    """
    (last,) = notes(999)
    await publish(hub, user, last)
    await until_received(follower, len(expected) + 1)
    assert [r.data for r in follower.received] == [*expected, last]
    assert all(r.event == "note" for r in follower.received)
    ids = [r.id for r in follower.received]
    assert all(ids)
    assert len(set(ids)) == len(ids)


async def test_resumes_with_the_last_id_it_kept(
    follow: Follow, start_hub: StartHub, env: dict[str, str], user: str
) -> None:
    hub = await start(start_hub, env)
    first = follow(hub, token(user), "")
    await until_open(hub, first)
    (zero, one, two, three) = notes(0, 1, 2, 3)
    await publish(hub, user, zero)
    await until_received(first, 1)
    await asyncio.sleep(2.5)  # two heartbeats go by on the open stream
    assert first.received == [Received("note", zero, first.received[0].id)]
    await first.stop()  # raises if a ping or anything else broke json.loads
    kept = first.kept()
    assert kept == first.received[0].id
    await until_open(hub, first, streams=0)

    for data in (one, two, three):
        await publish(hub, user, data)
    second = follow(hub, token(user), kept)
    await assert_exactly(second, hub, user, [one, two, three])
    await second.stop()


async def test_resumes_across_a_hub_killed_and_restarted(
    follow: Follow, start_hub: StartHub, env: dict[str, str], user: str
) -> None:
    port = free_port()
    hub, other = await asyncio.gather(start(start_hub, env, port), start(start_hub, env))
    follower = follow(hub, token(user), "")
    await until_open(hub, follower)
    (zero, one, two, three) = notes(0, 1, 2, 3)
    await publish(hub, user, zero)
    await until_received(follower, 1)

    hub.process.kill()  # the connection breaks under the subscriber
    await asyncio.to_thread(hub.process.wait, BOUND_S)
    await publish(other, user, one)
    await publish(other, user, two)
    hub = await start(start_hub, env, port)
    await publish(hub, user, three)
    await assert_exactly(follower, hub, user, [zero, one, two, three])
    await follower.stop()


@pytest.mark.parametrize("start_from", ["", "earliest"], ids=["from-now", "earliest"])
async def test_resumes_from_the_opening_when_the_hub_stops_before_any_event(
    follow: Follow, start_hub: StartHub, env: dict[str, str], user: str, start_from: str
) -> None:
    port = free_port()
    hub, other = await asyncio.gather(start(start_hub, env, port), start(start_hub, env))
    follower = follow(hub, token(user), start_from)
    await until_open(hub, follower)

    # A clean stop: the stream ends right after `hub.open`. From now, its id is all the
    # subscriber has to resume from; from `earliest` it has none (the position is not
    # settled yet), and the subscriber keeps asking for `earliest`.
    hub.process.terminate()
    await asyncio.to_thread(hub.process.wait, BOUND_S)
    published = notes(1, 2, 3)
    for data in published:
        await publish(other, user, data)
    hub = await start(start_hub, env, port)
    await assert_exactly(follower, hub, user, published)
    await follower.stop()


async def test_an_unreadable_last_id_is_told_as_hub_reset(
    follow: Follow, start_hub: StartHub, env: dict[str, str], user: str
) -> None:
    hub = await start(start_hub, env)
    follower = follow(hub, token(user), "not-a-cursor")
    await until_received(follower, 1)
    (reset,) = follower.received
    assert reset.event == "hub.reset"
    assert reset.data == {"reason": "unknown_cursor", "channels": [f"user:{user}"]}

    (one,) = notes(1)
    await publish(hub, user, one)
    await until_received(follower, 2)
    assert follower.received[1].event == "note"
    assert follower.received[1].data == one
    await follower.stop()
