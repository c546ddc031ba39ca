"""The seeds' scenario end to end: a producer appends an LLM-style answer chunk by
chunk; a real Chromium page (the demo's /demo/answer) reads it live, is reloaded
halfway, resumes from the offset it kept, and shows the answer whole, nothing twice."""

from __future__ import annotations

import uuid

import aiohttp
from playwright.async_api import Page

from hub.auth.verify import mint
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.redis_server import RedisServer

WAIT_MS = 20000
CHUNKS = [
    "Durable ",
    "streams ",
    "keep ",
    "every ",
    "token: ",
    "a ",
    "reload ",
    "loses ",
    "nothing.",
]
WRITER = {
    "Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='llm', publish=['stream:*'])}"
}


async def _append(hub: HubProcess, path: str, text: str, close: bool = False) -> None:
    headers = {**WRITER, "Content-Type": "text/plain"}
    if close:
        headers["Stream-Closed"] = "true"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{hub.url}{path}", data=text.encode(), headers=headers) as answer,
    ):
        assert answer.status == 204, await answer.text()


async def _shown(page: Page, text: str) -> None:
    await page.wait_for_function(
        "t => document.getElementById('answer').textContent.includes(t)", arg=text, timeout=WAIT_MS
    )


async def test_a_reload_halfway_resumes_the_answer_exactly(
    start_hub: StartHub, redis_server: RedisServer, page: Page
) -> None:
    hub = start_hub(
        {
            "HUB_REDIS_URL": redis_server.url,
            "HUB_KEY_PREFIX": f"db{uuid.uuid4().hex[:8]}:",
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
            "HUB_DURABLE_STREAMS": "true",
            "HUB_DURABLE_STREAMS_LONG_POLL_TIMEOUT": "2",
        }
    )
    name = f"answers/{uuid.uuid4().hex[:8]}"
    path = f"/v1/stream/{name}"
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{hub.url}{path}", headers={**WRITER, "Content-Type": "text/plain"}
        ) as created,
    ):
        assert created.status == 201
    reader = mint(SUBSCRIBER_KEY, "HS256", sub="reader")  # no `streams` claim: refused
    await page.goto(f"{hub.url}/demo/answer")
    await page.fill("#name", name)
    await page.fill("#token", reader)
    await page.click("#follow")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('stopped: 403')",
        timeout=WAIT_MS,
    )
    await page.fill("#token", WRITER["Authorization"].removeprefix("Bearer "))
    await page.click("#follow")
    for chunk in CHUNKS[:4]:
        await _append(hub, path, chunk)
    await _shown(page, "".join(CHUNKS[:4]))
    await page.reload()  # halfway: the page resumes from the offset it kept
    await page.wait_for_function(
        "() => ['resuming', 'following'].includes(document.getElementById('status').textContent)",
        timeout=WAIT_MS,
    )
    for chunk in CHUNKS[4:-1]:
        await _append(hub, path, chunk)
    await _append(hub, path, CHUNKS[-1], close=True)
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'complete'", timeout=WAIT_MS
    )
    assert await page.text_content("#answer") == "".join(CHUNKS)
