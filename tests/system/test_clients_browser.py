"""The browser's own EventSource in a real headless Chromium, used as an app uses it: through
`followHub` of examples/clients/browser.js (an `onmessage` handler, a `hub.reset`
listener), against `hub serve` on Redis: a new EventSource resumes exactly with
`?lastEventId=`, the automatic reconnect resumes exactly across a hub restart, also before
the first event (with the cursor of `hub.open`), and `onmessage` never sees `hub.open` nor
an event with empty data while heartbeats flow.

The page is the hub's own origin (`/healthz`), so the streams need no CORS.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import CDPSession, Page, async_playwright

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.redis_server import RedisServer, free_port
from tests.system.test_browser import CHROMIUM, FLAGS

SNIPPET = Path(__file__).resolve().parents[2] / "examples" / "clients" / "browser.js"
PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}
WAIT_MS = 20000  # any one condition on a loaded machine
PINGS = 2  # heartbeats a stream sees while the app must see no event for them

# What an app writes: `followHub` of the snippet, with its notifications to `onEvent` and
# `hub.reset` to `onReset` (refetch state). The `hub.open`, `open` and `error` listeners
# and the counters are the test's.
OPEN_SOURCE = """
({name, url, options}) => {
  const log = {messages: [], opens: [], resets: [], onopen: 0, errors: 0};
  const source = followHub(url, {
    ...options,
    onEvent: (event) => { log.messages.push(event); },
    onReset: (reset) => { log.resets.push(reset); },
  });
  source.addEventListener("open", () => { log.onopen += 1; });
  source.addEventListener("error", () => { log.errors += 1; });
  source.addEventListener("hub.open", (e) => {
    log.opens.push({id: e.lastEventId, data: e.data});
  });
  (window.sources ??= {})[name] = {source, log};
}
"""


def _env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": f"cb{uuid.uuid4().hex[:8]}:",
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "HUB_RETRY_MS": "300",
        **extra,
    }


def _user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def _token(user: str) -> str:
    return mint(SUBSCRIBER_KEY, "HS256", sub=user)


async def _publish(hub: HubProcess, user: str, data: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.url}/publish", json={"users": [user], "data": data}, headers=PUBLISHER
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()


@dataclass
class Tab:
    """One page on the hub's origin, holding named EventSources."""

    page: Page

    async def load(self, hub: HubProcess) -> None:
        """The hub's origin, with the snippet loaded as an app's page loads it."""
        await self.page.goto(hub.url + "/healthz")
        await self.page.add_script_tag(path=SNIPPET)

    async def open(self, name: str, hub: HubProcess, **options: str) -> None:
        """`followHub(hub.url, options)` as `name`: `token`, `lastEventId`."""
        await self.page.evaluate(OPEN_SOURCE, {"name": name, "url": hub.url, "options": options})

    async def close(self, name: str) -> None:
        await self.page.evaluate("name => window.sources[name].source.close()", name)

    async def log(self, name: str) -> dict[str, Any]:
        log: dict[str, Any] = await self.page.evaluate("n => window.sources[n].log", name)
        return log

    async def messages(self, name: str) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = (await self.log(name))["messages"]
        return messages

    async def until(self, name: str, condition: str) -> None:
        """Until `condition`, an expression of the source's `log` and `source`, holds."""
        await self.page.wait_for_function(
            f"n => {{ const {{log, source}} = window.sources[n]; return {condition}; }}",
            arg=name,
            timeout=WAIT_MS,
        )

    async def received(self, name: str, data: str) -> list[dict[str, str]]:
        """Every message `onmessage` got, once one with `data` is among them: per-channel
        order puts anything sent before it (a duplicate, an extra) before it."""
        await self.page.wait_for_function(
            "([n, d]) => window.sources[n].log.messages.some(m => m.data === d)",
            arg=[name, data],
            timeout=WAIT_MS,
        )
        return await self.messages(name)


@dataclass
class Wire:
    """The bytes Chromium received on each of the page's `/events` responses, read over
    the DevTools protocol (Network.streamResourceContent): heartbeats are comments, which
    EventSource shows the page nothing of."""

    cdp: CDPSession
    bodies: dict[str, bytearray] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    async def watch(cls, page: Page) -> Wire:
        wire = cls(await page.context.new_cdp_session(page))
        wire.cdp.on("Network.responseReceived", wire._response)
        wire.cdp.on("Network.dataReceived", wire._data)
        await wire.cdp.send("Network.enable")
        return wire

    def _response(self, params: dict[str, Any]) -> None:
        if "/events" in params["response"]["url"]:
            self.bodies[params["requestId"]] = bytearray()
            task = asyncio.create_task(self._stream(params["requestId"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _stream(self, request_id: str) -> None:
        answer = await self.cdp.send("Network.streamResourceContent", {"requestId": request_id})
        self.bodies[request_id][:0] = base64.b64decode(answer["bufferedData"])

    def _data(self, params: dict[str, Any]) -> None:
        if params["requestId"] in self.bodies and params.get("data"):
            self.bodies[params["requestId"]] += base64.b64decode(params["data"])

    def pings(self) -> int:
        """Heartbeats on the latest `/events` response."""
        body = list(self.bodies.values())[-1] if self.bodies else b""
        return bytes(body).count(b"\n: ping\n")

    async def until_pings(self, count: int) -> None:
        for _ in range(WAIT_MS // 50):
            if self.pings() >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.pings()} pings on the stream, not {count}")


@pytest.fixture
async def tab() -> AsyncIterator[Tab]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield Tab(await browser.new_page())
        finally:
            await browser.close()


def _data(messages: list[dict[str, str]]) -> list[str]:
    return [m["data"] for m in messages]


def _assert_distinct_ids(messages: list[dict[str, str]]) -> None:
    ids = [m["id"] for m in messages]
    assert all(ids)
    assert len(set(ids)) == len(ids)


async def test_a_new_eventsource_resumes_with_last_event_id_in_the_query(
    start_hub: StartHub, redis_server: RedisServer, tab: Tab
) -> None:
    hub = start_hub(_env(redis_server))
    user = _user()
    token = _token(user)
    await tab.load(hub)

    await tab.open("first", hub, token=token)
    await tab.until("first", "log.onopen >= 1")
    await _publish(hub, user, "before")
    first = await tab.received("first", "before")
    assert _data(first) == ["before"]
    seen_id = first[-1]["id"]  # the cursor the app saw last (e.lastEventId)
    assert seen_id
    await tab.close("first")  # the app goes away

    missed = ["one", 'two {"json": [1, 2]}', "three\nwith two lines"]
    for data in missed:
        await _publish(hub, user, data)
    await tab.open("again", hub, token=token, lastEventId=seen_id)
    await tab.until("again", "log.onopen >= 1")
    await _publish(hub, user, "end")
    again = await tab.received("again", "end")
    assert _data(again) == [*missed, "end"]
    _assert_distinct_ids(again)
    assert seen_id not in {m["id"] for m in again}
    assert _data(await tab.messages("first")) == ["before"]  # a closed source gets nothing
    assert (await tab.log("again"))["resets"] == []


async def test_eventsource_reconnects_by_itself_across_a_hub_restart(
    start_hub: StartHub, redis_server: RedisServer, tab: Tab
) -> None:
    env = _env(redis_server)
    port = free_port()
    hub, other = start_hub(env, port), start_hub(env)  # `other`: the same history
    user = _user()
    # Cookie auth, as a browser app logged in on the hub's origin has it.
    await tab.page.context.add_cookies(
        [{"name": "hub_token", "value": _token(user), "url": hub.url}]
    )
    await tab.load(hub)
    await tab.open("app", hub)  # no token: the cookie
    await tab.until("app", "log.onopen >= 1")
    await _publish(hub, user, "one")
    await _publish(hub, user, "two")
    assert _data(await tab.received("app", "two")) == ["one", "two"]

    hub.process.kill()  # the hub goes away under the open page
    hub.process.wait()
    await tab.until("app", "source.readyState !== 1 && log.errors >= 1")
    await _publish(other, user, "three")  # while the page is disconnected
    hub = start_hub(env, port)
    await tab.until("app", "log.onopen >= 2 && source.readyState === 1")
    await _publish(hub, user, "four")
    await _publish(hub, user, "end")

    messages = await tab.received("app", "end")
    assert _data(messages) == ["one", "two", "three", "four", "end"]
    _assert_distinct_ids(messages)
    log = await tab.log("app")
    assert log["resets"] == []
    assert len(log["opens"]) == 2


async def test_a_reconnect_before_the_first_event_resumes_from_the_open_cursor(
    start_hub: StartHub, redis_server: RedisServer, tab: Tab
) -> None:
    env = _env(redis_server, HUB_HEARTBEAT_INTERVAL="1")
    port = free_port()
    hub, other = start_hub(env, port), start_hub(env)
    user = _user()
    wire = await Wire.watch(tab.page)
    await tab.load(hub)
    await tab.open("app", hub, token=_token(user))
    await tab.until("app", "log.onopen >= 1 && log.opens.length >= 1")
    await wire.until_pings(PINGS)  # heartbeats flow, and the app has been shown nothing

    hub.process.kill()  # before any event for this user
    hub.process.wait()
    await tab.until("app", "source.readyState !== 1 && log.errors >= 1")
    # Published where the page cannot be: only the cursor of `hub.open`, sent back as
    # Last-Event-ID by the reconnect, brings them.
    missed = ["one", "two", "three"]
    for data in missed:
        await _publish(other, user, data)
    hub = start_hub(env, port)
    await tab.until("app", "log.onopen >= 2 && log.opens.length >= 2")
    await tab.received("app", "three")
    await wire.until_pings(PINGS)  # on the new stream
    await _publish(hub, user, "end")

    messages = await tab.received("app", "end")
    assert _data(messages) == [*missed, "end"]
    _assert_distinct_ids(messages)
    assert {m["type"] for m in messages} == {"message"}  # never `hub.open`
    log = await tab.log("app")
    assert log["resets"] == []
    assert [o["data"] for o in log["opens"]] == ["{}", "{}"]
    assert all(o["id"] for o in log["opens"])
