"""Resume exactness as a property: any interleaving of publishes, disconnects, reconnects and
reads leaves every client with every event of its channels once, in per-channel order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.delivery.cursor import NOWHERE, channel_tag, decode
from tests.support.hubs import EVERY_BROKER, HubClient, MakeHub
from tests.support.sse_client import SSEStream


@pytest.fixture(params=EVERY_BROKER)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every behaviour here holds on every broker and Redis topology."""
    return str(request.param)


CHANNELS = ("user:pat", "topic:t1", "topic:t2")
CLIENTS = {"a": ("t1",), "b": ("t2",), "c": ("t1", "t2")}

publish = st.tuples(st.just("publish"), st.sets(st.sampled_from(CHANNELS), min_size=1))
client_op = st.tuples(st.sampled_from(["disconnect", "reconnect", "read"]), st.sampled_from("abc"))
operations = st.lists(
    st.one_of(publish, client_op, st.tuples(st.just("read"), st.just("a"))), max_size=40
)


@dataclass
class Client:
    topics: tuple[str, ...]
    stream: SSEStream | None = None
    last_id: str | None = None
    got: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CHANNELS})

    @property
    def channels(self) -> tuple[str, ...]:
        return ("user:pat", *(f"topic:{t}" for t in self.topics))

    async def connect(self, hub: HubClient) -> None:
        # As EventSource does: the original URL (lastEventId=earliest), plus the header once an
        # id was seen.
        self.stream = await hub.subscribe(
            "pat", self.topics, last_event_id=self.last_id, query_last_id="earliest"
        )

    def disconnect(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    async def read(self, count: int) -> None:
        assert self.stream is not None
        tags = {channel_tag(c): c for c in self.channels}
        for _ in range(count):
            event = await self.stream.next()
            assert event.event == "message", event
            before = decode(self.last_id) if self.last_id else {}
            after = decode(event.id)
            # The channel whose offset moved is the one this event came on.
            moved = [
                tags[t]
                for t, p in after.items()
                if t in tags and before.get(t, NOWHERE).offset != p.offset
            ]
            assert len(moved) == 1, (before, after)
            self.got[moved[0]].append(int(event.data))
            self.last_id = event.id

    def outstanding(self, expected: dict[str, list[int]]) -> int:
        return sum(len(expected[c]) - len(self.got[c]) for c in self.channels)


async def _run(hub: HubClient, ops: list[tuple[str, object]]) -> None:
    clients = {name: Client(topics) for name, topics in CLIENTS.items()}
    expected: dict[str, list[int]] = {c: [] for c in CHANNELS}
    for client in clients.values():
        await client.connect(hub)
    for n, (kind, arg) in enumerate(ops):
        if kind == "publish":
            assert isinstance(arg, set)
            targets = sorted(arg)
            await hub.send(
                str(n),
                users=[c[5:] for c in targets if c.startswith("user:")],
                topics=[c[6:] for c in targets if c.startswith("topic:")],
            )
            for channel in targets:
                expected[channel].append(n)
            continue
        client = clients[str(arg)]
        if kind == "disconnect":
            client.disconnect()
        elif kind == "reconnect":
            client.disconnect()
            await client.connect(hub)
        elif client.stream is not None:
            await client.read(min(2, client.outstanding(expected)))
    for client in clients.values():
        if client.stream is None:
            await client.connect(hub)
        await client.read(client.outstanding(expected))
        for channel in client.channels:
            assert client.got[channel] == expected[channel], channel
        client.disconnect()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_every_client_sees_every_event_once_in_order(
    make_hub: MakeHub, broker_kind: str, ops: list[tuple[str, object]]
) -> None:
    hub = await make_hub()
    try:
        await _run(hub, ops)
    finally:
        await hub.client.close()
