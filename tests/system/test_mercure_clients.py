"""Mercure clients nobody here wrote, against `hub serve` on Redis with HUB_MERCURE:

- the browser's own EventSource in a real Chromium, subscribing through
  `/.well-known/mercure` as a Mercure app does (a URL with `topic=`, the
  `mercureAuthorization` cookie for private updates), reconnecting by itself
  across a hub restart and resuming exactly from the publisher's ids;
- PyPI's `mercure-publisher` publishing (its README's sync client, which mints
  its own `mercure.publish` token from the shared key) and `pymercure`'s
  `Consumer` subscribing, as their READMEs show.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from typing import Any

from mercure_publisher import MercureConfig, MercurePublisher
from playwright.async_api import Page
from pymercure.consumer import Consumer

from tests.support.hub_process import HubProcess
from tests.support.hubs import StartHub
from tests.support.mercure import MERCURE_KEY, classic_token
from tests.support.redis_server import RedisServer, free_port

WAIT_MS = 20000
BOOKS = "https://example.com/books/{id}"

# What a Mercure app's page does: an EventSource on the hub URL with its topics; the log
# is the test's.
OPEN = """
({url}) => {
  const log = {messages: [], onopen: 0, errors: 0};
  const source = new EventSource(url, {withCredentials: true});
  source.onmessage = (e) => log.messages.push({id: e.lastEventId, data: e.data});
  source.onopen = () => { log.onopen += 1; };
  source.onerror = () => { log.errors += 1; };
  window.app = {source, log};
}
"""


def _env(redis_server: RedisServer) -> dict[str, str]:
    return {
        "HUB_REDIS_URL": redis_server.url,
        "HUB_KEY_PREFIX": f"mc{uuid.uuid4().hex[:8]}:",
        "HUB_MERCURE": "true",
        "HUB_MERCURE_JWT_KEY": MERCURE_KEY,
        "HUB_MERCURE_ANONYMOUS": "true",
        "HUB_RETRY_MS": "300",
    }


def _publisher(hub: HubProcess) -> MercurePublisher:
    """mercure-publisher as its README configures it (no Redis cache for its token)."""
    config = MercureConfig(
        hub_url=f"{hub.url}/.well-known/mercure",
        publisher_jwt_key=MERCURE_KEY,
        publish_topics=["*"],
        jwt_ttl_seconds=3600,
        redis_config=None,
    )
    return MercurePublisher(config)


async def _publish(hub: HubProcess, topic: str, data: str, **fields: Any) -> str:
    def send() -> str:
        with _publisher(hub) as publisher:
            return str(publisher.publish(topic=topic, data=data, **fields))

    return await asyncio.to_thread(send)


async def _received(page: Page, data: str) -> list[dict[str, str]]:
    await page.wait_for_function(
        "d => window.app.log.messages.some(m => m.data === d)", arg=data, timeout=WAIT_MS
    )
    messages: list[dict[str, str]] = await page.evaluate("window.app.log.messages")
    return messages


async def test_eventsource_follows_topics_privately_and_resumes_across_a_restart(
    start_hub: StartHub, redis_server: RedisServer, page: Page
) -> None:
    env = _env(redis_server)
    port = free_port()
    hub, other = start_hub(env, port), start_hub(env)  # `other`: the same history
    # The cookie an app's backend sets for its users (here: private books 1 and 2).
    token = classic_token(subscribe=["https://example.com/books/1", "https://example.com/books/2"])
    await page.context.add_cookies(
        [{"name": "mercureAuthorization", "value": token, "url": hub.url}]
    )
    await page.goto(hub.url + "/healthz")
    url = f"{hub.url}/.well-known/mercure?topic={BOOKS.replace('{', '%7B').replace('}', '%7D')}"
    await page.evaluate(OPEN, {"url": url})
    await page.wait_for_function("window.app.log.onopen >= 1", timeout=WAIT_MS)

    first = await _publish(hub, "https://example.com/books/1", "one", id="book-1-v1")
    assert first == "book-1-v1"
    await _publish(hub, "https://example.com/books/3", "secret 3", private=True)  # not allowed
    await _publish(hub, "https://example.com/books/2", "two", private=True)
    await _publish(hub, "https://example.com/authors/1", "not selected")
    assert [m["data"] for m in await _received(page, "two")] == ["one", "two"]

    hub.process.kill()  # the hub goes away under the open page
    hub.process.wait()
    await page.wait_for_function(
        "window.app.source.readyState !== 1 && window.app.log.errors >= 1", timeout=WAIT_MS
    )
    await _publish(other, "https://example.com/books/4", "three")  # while it is away
    hub = start_hub(env, port)
    await page.wait_for_function("window.app.log.onopen >= 2", timeout=WAIT_MS)
    await _publish(hub, "https://example.com/books/5", "end", id="book-5-v1")
    messages = await _received(page, "end")
    assert [m["data"] for m in messages] == ["one", "two", "three", "end"]
    ids = [m["id"] for m in messages]
    assert ids[0] == "book-1-v1"
    assert ids[-1] == "book-5-v1"
    assert len(set(ids)) == 4


async def test_pymercure_consumer_receives_what_mercure_publisher_publishes(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    hub = start_hub(_env(redis_server))
    got: queue.Queue[Any] = queue.Queue()
    # pymercure's README: a Consumer of the hub URL and its topics, with a callback.
    consumer = Consumer(f"{hub.url}/.well-known/mercure", [BOOKS], got.put)
    consumer.daemon = True  # its thread reads until the stream ends
    await asyncio.to_thread(consumer.start_consumption)  # returns once the stream is open
    published = [
        await _publish(hub, "https://example.com/books/1", '{"title": "One"}', type="book"),
        await _publish(hub, "https://example.com/authors/1", "not selected"),
        await _publish(hub, "https://example.com/books/2", "two", id="b2"),
    ]
    first = await asyncio.to_thread(got.get, True, 20)
    second = await asyncio.to_thread(got.get, True, 20)
    assert (first.data, first.message_id, first.event_type) == (
        '{"title": "One"}',
        published[0],
        "book",
    )
    assert (second.data, second.message_id) == ("two", "b2")
    assert got.empty()
    # A draining hub ends the stream cleanly, and the consumer's thread with it.
    hub.process.terminate()
    await asyncio.to_thread(hub.process.wait, 20)
    await asyncio.to_thread(consumer.join, 20)
    assert not consumer.is_alive()
