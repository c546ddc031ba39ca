"""What failover tests share: a publisher that retries 503s with its Idempotency-Key and
keeps what was acknowledged, a readiness watch, and a judge of what streams received.

The judge's truth is what the promoted primary holds afterwards, read back through a
stream from `earliest`: a stream must have received exactly that, in order, unless it
was told `hub.reset` `history_lost`, which is only fair when something it had received
is no longer there; after the reset it must receive the retained history again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.support.hubs import HubClient
from tests.support.sse_client import SSEStream

# Answers a publisher may see while a primary is replaced; anything else fails the test.
ALLOWED = {200, 503}


@dataclass
class Publisher:
    """Publishes numbered messages round the channels; each is retried (same key) on 503
    and on a connection closed before its answer."""

    hub: HubClient
    users: Sequence[str]
    acked: dict[str, list[str]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    unavailable: int = 0
    missing_retry_after: int = 0
    dropped: int = 0  # attempts whose connection closed before an answer
    count: int = 0

    async def publish(self, user: str, attempts: int = 60) -> None:
        token = f"{user}/{self.count}"
        self.count += 1
        key = uuid.uuid4().hex
        for _ in range(attempts):
            try:
                async with self.hub.client.post(
                    "/publish",
                    json={"users": [user], "data": token},
                    headers={
                        "Authorization": f"Bearer {self.hub.publisher_token()}",
                        "Idempotency-Key": key,
                    },
                ) as response:
                    self.statuses.append(response.status)
                    if response.status == 200:
                        self.acked.setdefault(user, []).append(token)
                        return
                    if response.status == 503:
                        self.unavailable += 1
                        if "Retry-After" not in response.headers:
                            self.missing_retry_after += 1
                    if response.status not in ALLOWED:
                        return
            except aiohttp.ClientConnectionError:
                # No answer: unknown whether it was applied, so retried with its key, as a
                # publisher must. Counted: the tests report how often it happens.
                self.dropped += 1
            await asyncio.sleep(0.1)

    async def run(self, stop: asyncio.Event, pause: float = 0.01) -> None:
        """Round the users until `stop` (one publish at a time: order per channel holds)."""
        turn = 0
        while not stop.is_set() and turn < 100_000:
            await self.publish(self.users[turn % len(self.users)])
            turn += 1
            await asyncio.sleep(pause)


@dataclass
class ReadyWatch:
    """`/readyz` every 0.1 s: the statuses seen, in order."""

    hub: HubClient
    seen: list[int] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(3):
                    async with self.hub.client.get("/readyz") as response:
                        self.seen.append(response.status)
            except TimeoutError:
                self.seen.append(0)
            await asyncio.sleep(0.1)

    async def wait_for(self, status: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not self.seen or self.seen[-1] != status:
                await asyncio.sleep(0.05)


@dataclass
class Received:
    """What one stream received, per user: data tokens, and `None` where a history_lost
    reset for that user's channel came."""

    stream: SSEStream
    by_user: dict[str, list[str | None]] = field(default_factory=dict)
    other_resets: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                event = await self.stream.next(timeout=3600)
            except EOFError:
                return
            if event.event == "hub.reset":
                reset = json.loads(event.data)
                for channel in reset["channels"]:
                    if reset["reason"] == "history_lost":
                        self.by_user.setdefault(channel.removeprefix("user:"), []).append(None)
                    else:
                        self.other_resets.append(f"{reset['reason']} {channel}")
                continue
            self.by_user.setdefault(event.data.split("/")[0], []).append(event.data)

    def tokens(self, user: str) -> list[str]:
        return [token for token in self.by_user.get(user, []) if token is not None]


async def truth(hub: HubClient, users: Sequence[str]) -> dict[str, list[str]]:
    """What the primaries hold now, per user, read through a stream from `earliest`."""
    held: dict[str, list[str]] = {}
    for user in users:
        stream = await hub.subscribe(user, query_last_id="earliest")
        reader = Received(stream)
        task = asyncio.create_task(reader.run())
        # Publish a marker after the history to know when it has all arrived.
        marker = f"{user}/end-{uuid.uuid4().hex[:6]}"
        await hub.send(marker, users=[user])
        await _until_received(reader, user, marker)
        task.cancel()
        stream.close()
        held[user] = [t for t in reader.tokens(user) if t != marker]
    return held


async def _until_received(reader: Received, user: str, marker: str) -> None:
    """Until `marker` arrived on `user`'s channel; an AssertionError saying what came if it
    does not within 20 s."""
    try:
        async with asyncio.timeout(20):
            while marker not in reader.tokens(user):
                await asyncio.sleep(0.05)
    except TimeoutError:
        got = reader.tokens(user)
        raise AssertionError(
            f"{user}: {marker} did not arrive; received {len(got)} (last {got[-1:]}), "
            f"resets {reader.other_resets}, stream ended: {reader.stream._eof}"
        ) from None


def _compare(got: list[str], held: list[str]) -> str:
    """Where two token lists part, briefly (the lists run to hundreds)."""
    lost = [t for t in held if t not in got]
    extra = [t for t in got if t not in held]
    doubled = sorted({t for t in got if got.count(t) > 1})
    at = next((i for i, (a, b) in enumerate(zip(got, held, strict=False)) if a != b), None)
    return (
        f"received {len(got)}, history holds {len(held)} (first {held[:1]}); missing "
        f"{lost[:5]}, not held {extra[:5]}, doubled {doubled[:5]}, first difference at {at}"
    )


def judge(received: Received, user: str, held: list[str]) -> list[str]:
    """Problems with what one stream received on one user's channel (empty: none)."""
    got = received.by_user.get(user, [])
    if None not in got:
        tokens = [t for t in got if t is not None and "/end-" not in t]
        return [] if tokens == held else [f"{user}: {_compare(tokens, held)}"]
    cut = len(got) - 1 - got[::-1].index(None)
    before = [t for t in got[:cut] if t is not None]
    after = [t for t in got[cut + 1 :] if t is not None and "/end-" not in t]
    problems = []
    if all(token in held for token in before):
        problems.append(f"{user}: history_lost, but everything it had received is held")
    if after != held:
        problems.append(f"{user}: after the reset {_compare(after, held)}")
    return problems


class Scene:
    """Streams per user, a publisher and a readiness watch, all running."""

    def __init__(self, hub: HubClient, users: Sequence[str]) -> None:
        self.hub = hub
        self.users = users
        self.stop = asyncio.Event()
        self.publisher = Publisher(hub, users)
        self.ready = ReadyWatch(hub)
        self.received: dict[str, Received] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for user in self.users:
            self.received[user] = Received(await self.hub.subscribe(user))
        self.tasks = [asyncio.create_task(r.run()) for r in self.received.values()]
        self.tasks += [
            asyncio.create_task(self.publisher.run(self.stop)),
            asyncio.create_task(self.ready.run(self.stop)),
        ]
        await self.ready.wait_for(200)
        await asyncio.sleep(0.5)

    async def finish(self) -> list[str]:
        """Stops publishing and judges every stream against what Redis holds now."""
        await asyncio.sleep(1)  # publishing goes on a while after the failover
        self.stop.set()
        await asyncio.gather(*self.tasks[len(self.users) :])
        held = await truth(self.hub, self.users)
        problems = []
        for user, received in self.received.items():
            assert not received.stream._eof, f"{user}'s stream was closed by the failover"
            async with asyncio.timeout(20):  # the truth's marker comes after everything
                while not any("/end-" in t for t in received.tokens(user)):
                    await asyncio.sleep(0.05)
            problems += judge(received, user, held[user])
            problems += received.other_resets
        for task in self.tasks[: len(self.users)]:
            task.cancel()
        return problems

    def check_publishes(self, felt: bool = True) -> None:
        """Only 200s and 503s with Retry-After; `felt`: some 503s, and readiness lost a while."""
        statuses = set(self.publisher.statuses)
        assert statuses <= {200, 503}, f"publishers saw {statuses}"
        assert self.publisher.missing_retry_after == 0
        if felt:
            assert self.publisher.unavailable > 0, "the failover was felt by publishers (503)"
            assert 503 in self.ready.seen, self.ready.seen
        assert self.ready.seen[-1] == 200, self.ready.seen

    async def check_nothing_acknowledged_lost(self) -> None:
        held = await truth(self.hub, self.users)
        for user, tokens in self.publisher.acked.items():
            assert set(tokens) <= set(held[user]), f"acknowledged publishes to {user} were lost"


def lost(scene: Scene, user: str) -> bool:
    return None in scene.received[user].by_user.get(user, [])


@dataclass
class Roamer:
    """A client that keeps leaving and coming back with its last id, as a tab on a train
    does; what all its connections received is judged as one stream."""

    hub: HubClient
    user: str
    received: Received | None = None
    reconnects: int = 0

    async def run(self, stop: asyncio.Event, seed: int) -> None:
        rng = random.Random(seed)
        received = self.received or Received(await self.hub.subscribe(self.user))
        self.received = received
        last_id = ""
        while self.reconnects < 1000:
            task = asyncio.create_task(received.run())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.uniform(0.2, 1.5)):
                    await stop.wait()
            if stop.is_set():
                self._task = task  # the last connection reads on until judged
                return
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            last_id = received.stream.last_id or last_id
            received.stream.close()
            self.reconnects += 1
            received.stream = await self._open(last_id)

    async def open(self) -> None:
        """The first connection, before anything is published."""
        self.received = Received(await self.hub.subscribe(self.user))

    async def _open(self, last_id: str) -> SSEStream:
        for _ in range(100):  # a hub with no Redis answers 503: come back, as EventSource does
            try:
                return await self.hub.subscribe(self.user, last_event_id=last_id or None)
            except AssertionError:
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.user} could not reconnect")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    _task: asyncio.Task[None] | None = None
