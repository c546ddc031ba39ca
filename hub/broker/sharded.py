"""The live side on a Redis Cluster: sharded pub/sub, one link per primary that owns a
subscribed channel's slot.

A channel is SSUBSCRIBEd at the primary owning its slot. When the map changes (a
failover, a slot moved: the node pushes `sunsubscribe`, or a link is lost), the
channels whose owner changed move to the new owner's link with their
subscribers, and once they are subscribed there every stream resyncs from
history: entries published while a channel moved are never lost. A link with no
channel left is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from hub.broker.base import LiveSink
from hub.broker.commands import fixed
from hub.broker.keys import Keys
from hub.broker.live import LiveConnection
from hub.tasks import stop

log = logging.getLogger(__name__)

Address = tuple[str, int]


class SlotMap(Protocol):
    """What the live side needs of the Cluster route (`hub.broker.cluster`)."""

    @property
    def seed(self) -> Address: ...
    def owner(self, key: str) -> Address | None: ...
    def options(self, address: Address) -> dict[str, Any]: ...
    def refresh(self) -> asyncio.Task[bool]: ...


# How often the slot map is read while all is well, and while a link is down.
CHECK_INTERVAL = 5.0
REPAIR_INTERVAL = 0.5
_MOVE_TIMEOUT = 5.0


class ShardedLive:
    def __init__(
        self, route: SlotMap, keys: Keys, sink: LiveSink, on_reconnect: Callable[[], None]
    ) -> None:
        self._route = route
        self._keys = keys
        self._sink = sink
        self._on_reconnect = on_reconnect
        self._links: dict[Address, LiveConnection] = {}
        self._home: dict[str, Address] = {}
        self._kick = asyncio.Event()
        self._moving = False
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        links = {self._home[channel] for channel in self._home}
        return not self._moving and all(self._links[a].alive for a in links)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="hub-live-cluster")

    async def close(self) -> None:
        await stop(self._task)
        for link in self._links.values():
            await link.close()
        self._links.clear()

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        address = self._home.get(channel)
        if address is None:
            # Unknown owner (no map yet): any seed holds it until the map says otherwise.
            address = self._route.owner(self._keys.live(channel)) or self._route.seed
            self._home[channel] = address
        return self._link(address).subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        address = self._home.get(channel)
        if address is None:
            return
        link = self._links[address]
        link.unsubscribe(channel)
        if channel not in link.ledger.refs:
            del self._home[channel]

    def _link(self, address: Address) -> LiveConnection:
        link = self._links.get(address)
        if link is None:
            link = LiveConnection(
                fixed(self._route.options(address)),
                self._keys,
                self._sink,
                on_reconnect=self._on_reconnect,
                sharded=True,
                on_moved=self._moved,
            )
            link.start()
            self._links[address] = link
        return link

    def _moved(self, channel: str | None) -> None:
        self._kick.set()

    async def _watch(self) -> None:
        """Reads the slot map regularly, at once when a link reports a move, and often
        while a link is down; moves channels to their new owners."""
        while True:
            interval = CHECK_INTERVAL if self.alive else REPAIR_INTERVAL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._kick.wait()
            self._kick.clear()
            try:
                if await self._route.refresh():
                    await self._rehome()
            except Exception:  # a failure here must not end the watch: it runs again
                log.exception("moving live channels to their new nodes failed")

    async def _rehome(self) -> None:
        moved: list[asyncio.Future[None]] = []
        channels: list[str] = []
        for channel, address in list(self._home.items()):
            owner = self._route.owner(self._keys.live(channel))
            if owner is None or owner == address:
                continue
            source = self._links[address]
            count, waiters = source.ledger.move_out(channel)
            source.kick()
            target = self._link(owner)
            if count > 0:
                target.ledger.move_in(channel, count, waiters)
                target.kick()
            self._home[channel] = owner
            channels.append(channel)
            moved.append(target.subscribe(channel))
            target.unsubscribe(channel)  # the probe's reference; the future stays
        for address in [a for a in self._links if a not in set(self._home.values())]:
            await self._links.pop(address).close()
        if not moved:
            return
        log.warning("%d live channels moved to other Redis Cluster nodes; resyncing", len(moved))
        self._moving = True
        try:
            await asyncio.wait(moved, timeout=_MOVE_TIMEOUT)
        finally:
            self._moving = False
        # Entries published while a channel moved reached no link: history has them.
        self._sink.resync(channels)
