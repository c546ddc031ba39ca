"""GET /events end to end, through the real HTTP server, on the in-memory broker and on Redis."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.broker.base import HistoryPage
from hub.broker.memory import MemoryBroker
from hub.config import Settings
from hub.delivery.cursor import Position, channel_tag, decode, encode, encode_part
from hub.delivery.fanout import FanOut
from hub.delivery.subscription import Subscription
from hub.http.state import HUB
from tests.support.hubs import EVERY_BROKER, HubClient, MakeHub
from tests.support.sse_client import Event


@pytest.fixture(params=EVERY_BROKER)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every behaviour here holds on every broker and Redis topology."""
    return str(request.param)


async def test_headers_retry_and_live_event(hub: HubClient) -> None:
    stream = await hub.subscribe("alice")
    headers = stream.response.headers
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert stream.retry == hub.settings.retry_ms
    ids = await hub.send({"title": "Hello"}, users=["alice"], event="notification")
    event = await stream.next()
    assert (event.event, event.data) == ("notification", '{"title":"Hello"}')
    assert ids == {"user:alice": "1-0"}
    stream.close()


async def test_open_means_subscribed_for_every_publish_right_after_open(hub: HubClient) -> None:
    for n in range(5):
        stream = await hub.subscribe("bob")
        await hub.send(f"n{n}", users=["bob"])
        assert (await stream.next()).data == f"n{n}"
        stream.close()


async def test_user_and_topic_channels_and_a_message_to_both(hub: HubClient) -> None:
    stream = await hub.subscribe("alice", topics=["news", "room:1"])
    await hub.send("only news", topics=["news"])
    await hub.send("to both", users=["alice"], topics=["room:1"])
    await hub.send("someone else", users=["bob"])
    await hub.send("other room", topics=["room:2"])
    events = await stream.take(3)
    assert [e.data for e in events] == ["only news", "to both", "to both"]
    await hub.send("last", users=["alice"])
    assert (await stream.next()).data == "last"
    stream.close()


async def test_topic_not_granted_is_403_and_bad_topic_400(hub: HubClient) -> None:
    token = hub.subscriber_token("alice", topics=["news", "room:*"])
    ok = await hub.subscribe("alice", topics=["news", "room:7"], token=token)
    ok.close()
    for topic, status in (("secret", 403), ("bad topic!", 400), ("", 400)):
        response = await hub.client.get(
            "/events", params={"topic": topic}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert (await response.json())["status"] == status


async def test_auth_by_cookie_and_query_and_none(hub: HubClient) -> None:
    token = hub.subscriber_token("carol")
    response = await hub.client.get("/events", cookies={"hub_token": token})
    assert response.status == 200
    response.close()
    response = await hub.client.get("/events", params={"token": token})
    assert response.status == 200
    response.close()
    response = await hub.client.get("/events")
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    bad = await hub.client.get("/events", headers={"Authorization": "Bearer nope"})
    assert bad.status == 401


async def test_query_token_can_be_disabled(make_hub: MakeHub) -> None:
    hub = await make_hub(allow_query_token=False)
    response = await hub.client.get("/events", params={"token": hub.subscriber_token()})
    assert response.status == 401


async def test_resume_with_last_event_id_gets_exactly_what_was_missed(hub: HubClient) -> None:
    stream = await hub.subscribe("alice", topics=["news"])
    await hub.send("a1", users=["alice"])
    await hub.send("n1", topics=["news"])
    seen = await stream.take(2)
    stream.close()
    await hub.send("a2", users=["alice"])
    await hub.send("n2", topics=["news"])
    await hub.send("a3", users=["alice"])
    resumed = await hub.subscribe("alice", topics=["news"], last_event_id=seen[-1].id)
    events = await resumed.take(3)
    assert sorted(e.data for e in events) == ["a2", "a3", "n2"]
    assert [e.data for e in events if e.data.startswith("a")] == ["a2", "a3"]
    await hub.send("a4", users=["alice"])
    assert (await resumed.next()).data == "a4"
    resumed.close()


async def test_reconnect_before_the_first_event_still_resumes(hub: HubClient) -> None:
    """The opening block carries the starting cursor, as EventSource keeps it."""
    stream = await hub.subscribe("nora")
    opened_at = stream.last_id
    assert opened_at
    await hub.send("sent right after onopen", users=["nora"])
    stream.close()  # gone before reading it
    resumed = await hub.subscribe("nora", last_event_id=opened_at)
    event = await resumed.next()
    assert (event.event, event.data) == ("message", "sent right after onopen")
    resumed.close()


async def test_shutdown_flushes_what_was_accepted(make_hub: MakeHub) -> None:
    hub = await make_hub()
    stream = await hub.subscribe("olga")
    for n in range(20):
        await hub.send(f"o{n}", users=["olga"])
    # A publish is answered once Redis has it; its live copy may still be on the way to the
    # hub. Shutdown flushes what the stream accepted: so all 20 first, sent or queued.
    [sub] = hub.client.app[HUB].fanout.streams
    async with asyncio.timeout(20):
        while sub.sent + len(sub._outbox) < 20:
            await asyncio.sleep(0.01)
    await hub.client.app.shutdown()
    events = await stream.rest()
    assert [e.data for e in events] == [f"o{n}" for n in range(20)]
    assert not stream.aborted


async def test_basic_auth_header_falls_through_to_the_cookie(hub: HubClient) -> None:
    response = await hub.client.get(
        "/events",
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
        cookies={"hub_token": hub.subscriber_token()},
    )
    assert response.status == 200
    response.close()


async def test_header_wins_over_query_last_event_id(hub: HubClient) -> None:
    stream = await hub.subscribe("dave")
    await hub.send("d1", users=["dave"])
    first = await stream.next()
    await hub.send("d2", users=["dave"])
    second = await stream.next()
    stream.close()
    await hub.send("d3", users=["dave"])
    both = await hub.subscribe("dave", last_event_id=second.id, query_last_id=first.id)
    assert (await both.next()).data == "d3"
    both.close()
    query_only = await hub.subscribe("dave", query_last_id=first.id)
    assert [e.data for e in await query_only.take(2)] == ["d2", "d3"]
    query_only.close()


async def test_earliest_replays_all_retained_history(hub: HubClient) -> None:
    for n in range(3):
        await hub.send(f"e{n}", users=["erin"])
    stream = await hub.subscribe("erin", query_last_id="earliest")
    assert [e.data for e in await stream.take(3)] == ["e0", "e1", "e2"]
    stream.close()
    by_header = await hub.subscribe("erin", last_event_id="earliest")
    assert [e.data for e in await by_header.take(3)] == ["e0", "e1", "e2"]
    by_header.close()


async def test_cursor_at_the_tail_sends_no_reset(hub: HubClient) -> None:
    stream = await hub.subscribe("frank", topics=["quiet"])
    await hub.send("f1", users=["frank"])
    tail = (await stream.next()).id
    stream.close()
    resumed = await hub.subscribe("frank", topics=["quiet"], last_event_id=tail)
    await hub.send("f2", users=["frank"])
    event = await resumed.next()
    assert (event.event, event.data) == ("message", "f2")
    resumed.close()


async def test_garbage_cursor_gives_one_unknown_cursor_reset_then_live(hub: HubClient) -> None:
    await hub.send("before", users=["gina"])
    stream = await hub.subscribe("gina", topics=["news"], last_event_id="not-a-cursor\u00e9")
    reset = await stream.next()
    assert reset.event == "hub.reset"
    assert json.loads(reset.data) == {
        "reason": "unknown_cursor",
        "channels": ["user:gina", "topic:news"],
    }
    await hub.send("after", users=["gina"])
    assert (await stream.next()).data == "after"
    stream.close()
    # The reset's id is a real cursor: resuming from it resets no more, and replays
    # only what came after the reset.
    again = await hub.subscribe("gina", topics=["news"], last_event_id=reset.id)
    await hub.send("later", users=["gina"])
    assert [(e.event, e.data) for e in await again.take(2)] == [
        ("message", "after"),
        ("message", "later"),
    ]
    again.close()


async def test_trimmed_history_gives_one_reset_then_oldest_retained(make_hub: MakeHub) -> None:
    hub = await make_hub(history_max_len=10)
    stream = await hub.subscribe("hank")
    await hub.send("h1", users=["hank"])
    old = (await stream.next()).id
    stream.close()
    # MAXLEN ~ trims whole nodes of ~100 entries: publish well past the limit.
    for n in range(2, 400):
        await hub.send(f"h{n}", users=["hank"])
    resumed = await hub.subscribe("hank", last_event_id=old)
    reset = await resumed.next()
    assert reset.event == "hub.reset"
    assert json.loads(reset.data) == {"reason": "history_trimmed", "channels": ["user:hank"]}
    rest: list[Event] = []
    while len(rest) == 0 or rest[-1].data != "h399":
        rest.append(await resumed.next())
    numbers = [int(e.data[1:]) for e in rest]
    assert numbers == list(range(numbers[0], 400))
    assert numbers[0] > 2
    assert all(e.event == "message" for e in rest)
    resumed.close()


async def test_restarted_memory_hub_or_wiped_channel_gives_reset(
    make_hub: MakeHub, broker_kind: str
) -> None:
    first = await make_hub()
    stream = await first.subscribe("ivan")
    await first.send("i1", users=["ivan"])
    old = (await stream.next()).id
    stream.close()
    # A new hub on a fresh broker (memory) or a fresh key space (Redis) has lost the channel.
    second = await make_hub()
    await second.send("new epoch", users=["ivan"])
    resumed = await second.subscribe("ivan", last_event_id=old)
    reset = await resumed.next()
    assert (reset.event, json.loads(reset.data)["reason"]) == ("hub.reset", "history_trimmed")
    assert (await resumed.next()).data == "new epoch"
    resumed.close()
    # After the reset the cursor is new: the next resume neither resets nor replays.
    last = await second.subscribe("ivan", last_event_id=resumed.last_id)
    await second.send("then", users=["ivan"])
    assert (await last.next()).data == "then"
    last.close()


async def test_ids_are_cursors_over_all_channels(hub: HubClient) -> None:
    stream = await hub.subscribe("judy", topics=["a", "b"])
    await hub.send("x", topics=["b"])
    event = await stream.next()
    assert len(decode(event.id)) == 3
    assert all(ch.isalnum() or ch in "._" for ch in event.id)
    stream.close()


async def test_heartbeat_comment_when_idle(make_hub: MakeHub) -> None:
    hub = await make_hub(heartbeat_interval=0.2)
    stream = await hub.subscribe("kim")
    await stream.wait_comment("ping")
    await stream.wait_comment("ping")
    assert stream.comments == ["ping", "ping"]
    stream.close()


async def test_shutdown_ends_open_streams_cleanly(make_hub: MakeHub) -> None:
    hub = await make_hub()
    stream = await hub.subscribe("lena")
    await hub.send("l1", users=["lena"])
    assert (await stream.next()).data == "l1"
    await hub.client.app.shutdown()
    assert await stream.rest() == []


async def test_stream_ends_when_its_token_expires(hub: HubClient) -> None:
    stream = await hub.subscribe("mia", token=hub.subscriber_token("mia", ttl=2))
    await hub.send("m1", users=["mia"])
    assert (await stream.next()).data == "m1"
    assert await stream.rest(timeout=20) == []
    assert not stream.aborted


async def test_no_one_reads_a_channel_that_is_not_theirs(hub: HubClient) -> None:
    """A topic named like a user channel is still a topic: bob's messages stay bob's."""
    token = hub.subscriber_token("alice", topics=["*"])
    alice = await hub.subscribe("alice", topics=["user:bob", "bob"], token=token)
    bob = await hub.subscribe("bob")
    await hub.send("for bob only", users=["bob"])
    await hub.send("for alice", users=["alice"])
    assert (await alice.next()).data == "for alice"
    assert (await bob.next()).data == "for bob only"
    alice.close()
    bob.close()


async def test_cursor_ahead_of_the_channel_is_history_lost(hub: HubClient) -> None:
    """A channel behind the client (a failover lost entries, or an older snapshot came
    back): told, and every retained entry is sent again, since new ones reuse offsets."""
    stream = await hub.subscribe("uma")
    await hub.send("u1", users=["uma"])
    seen = await stream.next()
    stream.close()
    (tag, position), *_ = decode(seen.id).items()
    ahead = encode([encode_part(tag, Position(position.epoch, position.offset + 50))])
    resumed = await hub.subscribe("uma", last_event_id=ahead)
    reset = await resumed.next()
    assert (reset.event, json.loads(reset.data)) == (
        "hub.reset",
        {"reason": "history_lost", "channels": ["user:uma"]},
    )
    assert (await resumed.next()).data == "u1"
    await hub.send("u2", users=["uma"])
    assert (await resumed.next()).data == "u2"
    resumed.close()


async def test_cursor_with_the_largest_values_is_read_safely(hub: HubClient) -> None:
    huge = encode([encode_part(channel_tag("user:vic"), Position(36**12 - 1, 36**12 - 1))])
    stream = await hub.subscribe("vic", last_event_id=huge)
    assert (await stream.next()).event == "hub.reset"
    await hub.send("fine", users=["vic"])
    assert (await stream.next()).data == "fine"
    stream.close()
    # The channel's own epoch, with the largest offset and stamp: read past its top.
    epoch = decode(stream.last_id)[channel_tag("user:vic")].epoch
    far = encode([encode_part(channel_tag("user:vic"), Position(epoch, 36**12 - 1, 36**6 - 1))])
    resumed = await hub.subscribe("vic", last_event_id=far)
    assert json.loads((await resumed.next()).data)["reason"] == "history_lost"
    assert (await resumed.next()).data == "fine"
    resumed.close()


async def test_a_resync_asked_for_while_the_position_is_read_keeps_the_backfill_due() -> None:
    """The pub/sub link reconnects between the subscription and the position read: what
    was published in between was never live, so the stream must still read history."""
    sub = Subscription(("user:ann",), 100)

    class ReconnectingBroker(MemoryBroker):
        async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
            sub.request_resync()  # as FanOut.resync does after a pub/sub reconnect
            return await super().history(channel, after, limit)

    broker = ReconnectingBroker(Settings())
    assert sub.from_now
    resyncs = sub.resyncs
    await sub.take_positions(broker)
    sub.settle(resyncs)
    assert sub.needs_sync
    plain = Subscription(("user:ann",), 100)
    resyncs = plain.resyncs
    await plain.take_positions(MemoryBroker(Settings()))
    plain.settle(resyncs)
    assert not plain.needs_sync  # without a reconnect, no backfill is due


async def test_the_wait_for_a_subscription_is_bounded_by_the_tick() -> None:
    fanout = FanOut(MemoryBroker(Settings()))
    loop = asyncio.get_running_loop()
    pending, confirmed, failed = (loop.create_future() for _ in range(3))
    never = fanout.wait_subscribed(pending, 0.5)
    yes = fanout.wait_subscribed(confirmed, 0.5)
    no = fanout.wait_subscribed(failed, 0.5)
    confirmed.set_result(None)
    failed.set_exception(ConnectionError("lost"))
    await asyncio.sleep(0)
    assert (yes.result(), no.result()) == (True, False)
    fanout.tick(loop.time(), 30)  # before the deadline: still waiting
    assert not never.done()
    fanout.tick(loop.time() + 0.5, 30)
    assert never.result() is False
    pending.set_result(None)  # too late: the answer stays
    await asyncio.sleep(0)
    assert never.result() is False


async def test_a_resync_of_some_channels_reaches_only_the_streams_that_follow_them() -> None:
    fanout = FanOut(MemoryBroker(Settings()))
    ann = Subscription(("user:ann", "topic:news"), 100)
    bob = Subscription(("user:bob",), 100)
    cat = Subscription(("user:cat",), 100)
    for sub in (ann, bob, cat):
        fanout.add(sub)
    before = {sub: sub.resyncs for sub in (ann, bob, cat)}
    fanout.resync(["topic:news", "user:bob"])
    assert [sub.resyncs - before[sub] for sub in (ann, bob, cat)] == [1, 1, 0]
    fanout.resync()  # None: every stream
    assert [sub.resyncs - before[sub] for sub in (ann, bob, cat)] == [2, 2, 1]


async def test_a_registration_ends_with_its_block_however_it_ends() -> None:
    fanout = FanOut(MemoryBroker(Settings()))
    sub = Subscription(("user:ann", "topic:news"), 100)

    async def fail_while_registered() -> None:
        async with fanout.registered(sub) as subscribed:
            await subscribed
            assert fanout.streams == {sub}
            raise RuntimeError("the response could not start")

    with pytest.raises(RuntimeError):
        await fail_while_registered()
    assert fanout.streams == set()
    fanout.resync(["user:ann", "topic:news"])
    assert sub.resyncs == 0  # no channel still leads to it
