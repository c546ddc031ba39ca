"""What only the in-memory broker must prove: what it keeps stays bounded."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

from hub.broker.base import Idempotency
from hub.broker.memory import MemoryBroker
from hub.config import Settings
from hub.message import Message
from tests.support.sinks import RecordingSink, message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_payload_is_kept_once_whatever_its_targets() -> None:
    broker = MemoryBroker(Settings())
    sink = RecordingSink()
    await broker.start(sink)
    size = 1_000_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        data = "x" * size
        targets = ("user:a", "user:b", "topic:c")
        await broker.publish([Message(channels=targets, event="message", data=data)])
        assert len(sink.delivered) == 3, "delivered live to every target"
        del data
        sink.delivered.clear()  # what the sink was given is the sink's, not the broker's
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert size <= kept < size * 1.5, f"{kept} bytes kept for a {size}-byte payload"
    for channel in targets:
        (entry,) = (await broker.history(channel, 0, 10)).entries
        assert entry.body == b"event: message\ndata: " + b"x" * size + b"\n\n"


async def test_idempotency_keys_are_bounded_the_oldest_forgotten_first() -> None:
    broker = MemoryBroker(Settings(), max_idempotency_keys=50)
    for n in range(200):
        await broker.publish([message("user:k")], Idempotency(f"key{n}", "fp"))
    assert broker.idempotency_keys == 50
    again = await broker.publish([message("user:k")], Idempotency("key199", "fp"))
    assert again == [{"user:k": "200-0"}], "a recent key still answers as before"
    forgotten = await broker.publish([message("user:k")], Idempotency("key0", "fp"))
    assert forgotten == [{"user:k": "201-0"}], "the oldest key was forgotten"
    assert broker.idempotency_keys == 50


async def test_idempotency_keys_expire_after_their_ttl_and_only_they() -> None:
    clock = Clock()
    settings = dataclasses.replace(Settings(), idempotency_ttl=60)
    broker = MemoryBroker(settings, clock=clock)
    first = await broker.publish([message("user:t")], Idempotency("first", "fp"))
    clock.now += 30
    second = await broker.publish([message("user:t")], Idempotency("second", "fp"))
    clock.now += 30  # `first` is 60 s old: expired; `second` is not
    assert await broker.publish([message("user:t")], Idempotency("second", "fp")) == second
    assert broker.idempotency_keys == 1
    assert await broker.publish([message("user:t")], Idempotency("first", "fp")) != first
    assert (await broker.history("user:t", None, 0)).top == 3
    clock.now += 60
    assert await broker.publish([message("user:t")]) == [{"user:t": "4-0"}]
    assert broker.idempotency_keys == 2, "expired keys go when a keyed publish comes"
    await broker.publish([message("user:t")], Idempotency("third", "fp"))
    assert broker.idempotency_keys == 1
