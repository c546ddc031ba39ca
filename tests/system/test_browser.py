"""The demo page in a real headless Chromium: cookie auth, live events, a hub restart survived
by EventSource's own reconnect with Last-Event-ID, and the typewriter's NDJSON stream."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.redis_server import RedisServer, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
assert Path(CHROMIUM).exists(), "chromium is not installed (apt-get install -y chromium)"
# As root and offline: no sandbox, and none of Chromium's background traffic.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEYS = {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
PUBLISHER = {"Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='t', publish=['*'])}"}


async def _publish(hub: HubProcess, data: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"users": ["alice"], "event": "notification", "data": data}
        async with session.post(f"{hub.url}/publish", json=body, headers=PUBLISHER) as answer:
            assert answer.status == 200


async def _shown(page: Page) -> list[str]:
    texts = await page.locator("#events li:not(.reply) .data").all_text_contents()
    return list(reversed(texts))  # the page shows the newest first


async def _wait_shown(page: Page, expected: list[str]) -> None:
    await page.wait_for_function(
        "n => document.querySelectorAll('#events li:not(.reply)').length >= n",
        arg=len(expected),
        timeout=20000,
    )
    assert await _shown(page) == expected


async def test_demo_page_receives_live_events_across_a_hub_restart(
    start_hub: StartHub, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": "browser:",
        "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
        "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "HUB_DEMO_TOKENS": "true",
        "HUB_RETRY_MS": "300",
    }
    port = free_port()
    hub, other = start_hub(env, port), start_hub(env)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1100, "height": 760})
        try:
            await page.goto(hub.url + "/")
            await page.fill("#user", "alice")
            await page.click("#connect")
            await page.wait_for_function("document.getElementById('state').textContent === 'open'")
            await _publish(hub, "one")
            await _publish(hub, "two")
            await _wait_shown(page, ["one", "two"])

            hub.process.kill()  # the hub goes away under the open page
            hub.process.wait()
            await page.wait_for_function(
                "document.getElementById('state').textContent !== 'open'", timeout=20000
            )
            await _publish(other, "three")  # while the page is disconnected
            start_hub(env, port)
            await page.wait_for_function(
                "document.getElementById('reconnects').textContent === '1'", timeout=30000
            )
            await _publish(hub, "four")
            # EventSource resumed by itself with Last-Event-ID: every event exactly once.
            await _wait_shown(page, ["one", "two", "three", "four"])

            await page.fill("#answer", "tokens arrive one by one")
            await page.click("#type")
            await page.wait_for_function(
                "[...document.querySelectorAll('#events li.reply')]"
                ".some(li => li.textContent === 'tokens arrive one by one')",
                timeout=20000,
            )
            await page.screenshot(path=str(tmp_path / "demo.png"))
            if os.environ.get("HUB_DEMO_SCREENSHOT"):
                await page.screenshot(path=os.environ["HUB_DEMO_SCREENSHOT"])
        finally:
            await browser.close()


@pytest.fixture
def broker_kind() -> str:
    return "memory"


async def test_dev_tokens_are_off_unless_enabled(start_hub: StartHub) -> None:
    hub = start_hub(
        {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.url}/") as response:
            assert response.status == 200
            assert "EventSource" in await response.text()
        async with session.post(f"{hub.url}/demo/login", json={"user": "eve"}) as response:
            assert response.status == 403
            assert "hub_token" not in response.cookies
            assert "HUB_DEMO_TOKENS=true make run" in (await response.json())["detail"]


async def _open_page(playwright: Playwright, hub: HubProcess) -> tuple[Browser, Page]:
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = await browser.new_page(viewport={"width": 1100, "height": 760})
    await page.goto(hub.url + "/")
    return browser, page


async def _state(page: Page, state: str) -> None:
    await page.wait_for_function(
        "s => document.getElementById('state').textContent === s", arg=state, timeout=20000
    )


async def test_disconnect_publish_connect_shows_the_missed_event_once(start_hub: StartHub) -> None:
    hub = start_hub({**KEYS, "HUB_DEMO_TOKENS": "true"})
    async with async_playwright() as playwright:
        browser, page = await _open_page(playwright, hub)
        try:
            await page.fill("#user", "alice")
            await page.click("#connect")
            await _state(page, "open")
            assert await page.text_content("#resume") == "from now"
            await _publish(hub, "one")
            await _wait_shown(page, ["one"])

            await page.click("#disconnect")
            await _state(page, "closed")
            await _publish(hub, "missed while disconnected")
            await page.click("#connect")
            await _state(page, "open")
            assert (await page.text_content("#resume") or "").startswith("resuming after ")
            await _wait_shown(page, ["one", "missed while disconnected"])
            await _publish(hub, "live again")
            await _wait_shown(page, ["one", "missed while disconnected", "live again"])
            await page.wait_for_timeout(300)  # nothing arrives twice
            assert await _shown(page) == ["one", "missed while disconnected", "live again"]
            assert await page.text_content("#reconnects") == "0"  # Connect is no reconnect
            assert await page.text_content("#reason") == ""
        finally:
            await browser.close()


async def test_a_refused_stream_shows_the_hubs_reason(start_hub: StartHub) -> None:
    hub = start_hub(KEYS)  # development tokens off: a pasted token
    async with async_playwright() as playwright:
        browser, page = await _open_page(playwright, hub)
        try:
            hint = await page.text_content("#dev-hint") or ""
            assert "HUB_DEMO_TOKENS=true make run" in hint
            forged = mint("another-key-that-is-long-enough-0123456789", "HS256", sub="alice")
            await page.fill("#subscriber-token", forged)
            await page.click("#connect")
            await _state(page, "closed")
            await page.wait_for_function("document.getElementById('reason').textContent !== ''")
            detail = await _problem_detail(hub, forged)
            assert await page.text_content("#reason") == f"refused: 401 {detail}"

            granted_news = mint(SUBSCRIBER_KEY, "HS256", sub="alice", topics=["news"])
            await page.fill("#subscriber-token", granted_news)
            await page.fill("#topics", "secret")
            await page.click("#connect")
            await _state(page, "closed")
            await page.wait_for_function(
                "document.getElementById('reason').textContent.startsWith('refused: 403')"
            )
            detail = await _problem_detail(hub, granted_news, topic="secret")
            assert await page.text_content("#reason") == f"refused: 403 {detail}"
            assert "secret" in detail

            await page.fill("#topics", "news")  # a good one clears the reason
            await page.click("#connect")
            await _state(page, "open")
            assert await page.text_content("#reason") == ""
        finally:
            await browser.close()


async def _problem_detail(hub: HubProcess, token: str, **params: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.url}/events", params={"token": token, **params}) as answer,
    ):
        assert answer.status in (401, 403)
        assert answer.content_type == "application/problem+json"
        problem = await answer.json(content_type=None)
        assert problem["detail"]
        return str(problem["detail"])
