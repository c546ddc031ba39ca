"""The client library, the `hub publish` / `hub listen` commands and the runnable example."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import pytest

from hub.auth.verify import mint
from hub.client import Publisher, PublishError, SubscribeError, subscribe
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, HubClient, MakeHub, StartHub
from tests.support.paths import ROOT
from tests.support.redis_server import RedisServer, free_port

KEYS = {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}


def _url(hub: HubClient) -> str:
    return str(hub.client.make_url("")).rstrip("/")


@pytest.fixture
def broker_kind() -> str:
    return "memory"


async def test_publisher_and_subscribe(hub: HubClient) -> None:
    events = subscribe(_url(hub), hub.subscriber_token("cleo"), topics=["news"])
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.3)
    async with Publisher(_url(hub), hub.publisher_token()) as publisher:
        ids = await publisher.publish({"a": 1}, users=["cleo"], event="note")
        batch = await publisher.publish_batch([{"topics": ["news"], "data": "b"}])
    assert ids == {"user:cleo": "1-0"}
    assert batch == [{"topic:news": "1-0"}]
    event = await asyncio.wait_for(first, 10)
    assert (event.event, event.json()) == ("note", {"a": 1})
    assert (await asyncio.wait_for(anext(events), 10)).data == "b"
    await events.aclose()


async def test_subscribe_surfaces_resets_and_refusals(hub: HubClient) -> None:
    events = subscribe(_url(hub), hub.subscriber_token("dora"), last_event_id="garbage")
    reset = await asyncio.wait_for(anext(events), 10)
    assert reset.is_reset
    assert reset.json()["reason"] == "unknown_cursor"
    await events.aclose()
    refused = subscribe(_url(hub), "not-a-token")
    with pytest.raises(SubscribeError) as caught:
        await asyncio.wait_for(anext(refused), 10)
    assert caught.value.status == 401


async def test_publisher_reports_refusals(hub: HubClient) -> None:
    async with Publisher(_url(hub), hub.subscriber_token()) as publisher:
        with pytest.raises(PublishError) as caught:
            await publisher.publish("x", users=["a"])
    assert caught.value.status == 401


async def test_publisher_retries_through_an_outage_and_publishes_once(
    make_hub: MakeHub, own_redis: RedisServer
) -> None:
    hub = await make_hub(redis_url=own_redis.url)
    stream = await hub.subscribe("otto")
    own_redis.stop()
    async with Publisher(_url(hub), hub.publisher_token(), retries=20) as publisher:
        publishing = asyncio.ensure_future(publisher.publish("after the outage", users=["otto"]))
        await asyncio.sleep(0.5)
        assert not publishing.done(), "it retries while Redis is down"
        own_redis.start()
        assert await asyncio.wait_for(publishing, 30) == {"user:otto": "1-0"}
    await hub.send("marker", users=["otto"])
    assert [e.data for e in await stream.take(2, timeout=30)] == ["after the outage", "marker"]
    stream.close()


async def test_subscribe_resumes_across_a_hub_restart(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    env = {"HUB_REDIS_URL": redis_server.url, "HUB_KEY_PREFIX": "client-resume:", **KEYS}
    port = free_port()
    hub = start_hub(env, port)
    token = mint(SUBSCRIBER_KEY, "HS256", sub="rex")
    publisher = Publisher(hub.url, mint(PUBLISHER_KEY, "HS256", sub="p", publish=["*"]))
    events = subscribe(hub.url, token, reconnect_delay=0.1)
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.5)
    await publisher.publish("r1", users=["rex"])
    assert (await asyncio.wait_for(first, 10)).data == "r1"
    hub.process.kill()
    hub.process.wait()
    start_hub(env, port)
    await publisher.publish("r2", users=["rex"])  # published while the client was away
    assert (await asyncio.wait_for(anext(events), 20)).data == "r2"
    await events.aclose()
    await publisher.close()


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HUB_URL": url, **KEYS}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_cli_publish_and_listen(start_hub: StartHub) -> None:
    hub = start_hub(KEYS)
    env = {"PATH": os.environ.get("PATH", ""), "HUB_URL": hub.url, **KEYS}
    listener = subprocess.Popen(
        [sys.executable, "-m", "hub", "listen", "--user", "lia", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listener.stdout is not None
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            line = pool.submit(listener.stdout.readline)
            time.sleep(1.0)  # the listener connects; a later publish is delivered
            sent = _cli("publish", "--user", "lia", "--event", "note", "hello\nworld", url=hub.url)
            assert sent.returncode == 0, sent.stderr
            assert json.loads(sent.stdout) == {"user:lia": "1-0"}
            event = json.loads(line.result(timeout=20))
        assert (event["event"], event["data"]) == ("note", "hello\nworld")
    finally:
        listener.terminate()
        listener.wait()
        listener.stdout.close()
    as_json = _cli("publish", "--topic", "t", "--json", '{"k": [1]}', url=hub.url)
    assert as_json.returncode == 0, as_json.stderr


def test_cli_errors_are_useful() -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    down = _cli("publish", "--user", "a", "x", url=unreachable)
    assert down.returncode == 1
    assert "cannot be reached" in down.stderr
    no_target = _cli("publish", "x", url=unreachable)
    assert no_target.returncode == 2
    assert "--user or --topic" in no_target.stderr
    for command in ("publish", "listen", "token", "serve"):
        helped = _cli(command, "--help", url=unreachable)
        assert helped.returncode == 0
        assert "usage: hub " + command in helped.stdout


async def test_the_example_runs(start_hub: StartHub) -> None:
    hub = start_hub(KEYS)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HUB_URL": hub.url,
        "HUB_SUBSCRIBER_TOKEN": mint(SUBSCRIBER_KEY, "HS256", sub="alice"),
        "HUB_PUBLISHER_TOKEN": mint(PUBLISHER_KEY, "HS256", sub="p", publish=["*"]),
        "PYTHONPATH": str(ROOT),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "examples" / "publish_and_listen.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f'notification: {{"n":{n}}}' for n in (1, 2, 3)]
