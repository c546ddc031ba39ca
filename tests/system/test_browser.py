"""The demo page in a real headless Chromium: cookie auth, live events, a hub restart survived
by EventSource's own reconnect with Last-Event-ID, and the typewriter's NDJSON stream."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright

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
