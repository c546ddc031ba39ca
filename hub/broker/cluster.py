"""Commands to a Redis Cluster: each script goes to the primary that owns its keys' slot.

The slot map comes from CLUSTER SLOTS, asked of any node that answers (the known
primaries first, then the seeds). A MOVED reply updates the one slot at once and
asks for a new map; ASK sends that one call, with ASKING, to the node importing
the slot. An unreachable node asks for a new map and fails the call (503): the
publisher retries, by then usually at the promoted replica.

Our own pipelined links rather than redis-py's cluster client: `HUB_REPLICAS_ACK`
needs WAIT on the very connection that ran the script, which a pooled client
cannot promise; and a call costs a fraction of the CPU (README "Scaling").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ResponseError

from hub.broker.base import LiveSink
from hub.broker.commands import Arg, Commands, Script, fixed
from hub.broker.keys import Keys
from hub.broker.routes import PING_TIMEOUT, Live, answers
from hub.broker.sharded import Address, ShardedLive
from hub.redisurl import Topology

log = logging.getLogger(__name__)

SLOTS = 16384
# Redirections followed for one call: a slot moves once, a failover adds one.
_REDIRECTS = 4
# The slot map is asked for at most this often, however many calls ask.
_MIN_REFRESH = 0.1


class ClusterRoute:
    publish = "SPUBLISH"

    def __init__(self, topology: Topology, timeout: float = 5.0) -> None:
        self._seeds = [(node["host"], node["port"]) for node in topology.nodes]
        # Credentials and TLS are the same for every node.
        self._base = {k: v for k, v in topology.nodes[0].items() if k not in ("host", "port")}
        self._timeout = timeout
        self._slots: list[Address | None] = [None] * SLOTS
        self._nodes: dict[Address, Commands] = {}
        self._refreshing: asyncio.Task[bool] | None = None
        self._refreshed_at = float("-inf")
        self.sharded_live: Live | None = None

    # -- the slot map ------------------------------------------------------------------------

    def owner(self, key: str) -> Address | None:
        return self._slots[key_slot(key.encode())]

    @property
    def seed(self) -> Address:
        return self._seeds[0]

    @property
    def primaries(self) -> set[Address]:
        return {address for address in self._slots if address is not None}

    @property
    def covered(self) -> bool:
        return None not in self._slots

    def options(self, address: Address) -> dict[str, Any]:
        return {**self._base, "host": address[0], "port": address[1]}

    def refresh(self) -> asyncio.Task[bool]:
        """A new slot map (shared by everyone who asks meanwhile); True once it is read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return self._refreshing

    async def _refresh(self) -> bool:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._refreshed_at + _MIN_REFRESH - loop.time()))
        self._refreshed_at = loop.time()
        for address in [*sorted(self.primaries), *self._seeds]:
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    reply = await self._node(address).call("CLUSTER", "SLOTS")
            except (OSError, ResponseError) as exc:
                log.debug("no slot map from %s:%d: %s", *address, exc)
                continue
            slots: list[Address | None] = [None] * SLOTS
            for start, end, primary, *_ in reply:
                host = primary[0].decode() or address[0]  # '' is "the node you asked"
                for slot in range(start, end + 1):
                    slots[slot] = (host, int(primary[1]))
            if slots != self._slots:
                log.info("Redis Cluster slot map: %d primaries", len(set(slots) - {None}))
            self._slots = slots
            for gone in set(self._nodes) - self.primaries - set(self._seeds):
                await self._nodes.pop(gone).close()
            return True
        log.warning("no node of the Redis Cluster answered CLUSTER SLOTS")
        return False

    def _node(self, address: Address) -> Commands:
        commands = self._nodes.get(address)
        if commands is None:
            commands = Commands(fixed(self.options(address)), self._timeout)
            self._nodes[address] = commands
        return commands

    # -- calls -------------------------------------------------------------------------------

    def groups(self, channels: Sequence[str]) -> list[list[str]]:
        """One script call per slot: a channel's keys share the channel's slot."""
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        return list(by_slot.values())

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        wait: tuple[int, float] | None = None,
    ) -> Any:
        slot = key_slot(keys[0].encode())
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot]
            if address is None:
                raise ConnectionError(f"no node of the Redis Cluster serves slot {slot}")
        asking = False
        for _ in range(_REDIRECTS):
            try:
                return await self._node(address).run(script, keys, args, asking=asking, wait=wait)
            except ResponseError as exc:
                code, _, rest = str(exc).partition(" ")
                if code not in ("MOVED", "ASK"):
                    raise
                host, _, port = rest.split(" ")[-1].rpartition(":")
                address, asking = (host, int(port)), code == "ASK"
                if code == "MOVED":
                    self._slots[slot] = address
                    self.refresh()
            except (ConnectionError, TimeoutError):
                self.refresh()  # the node is gone: a replica is about to take its slots
                raise
        raise ConnectionError(f"slot {slot} kept moving; retry later")

    async def reachable(self, replicas: int = 0) -> bool:
        if not self.covered:
            self.refresh()
            return False
        nodes = [self._node(address) for address in self.primaries]
        replies = await asyncio.gather(*(answers(node, replicas) for node in nodes))
        if not all(replies):
            self.refresh()
        return all(replies)

    def live(self, keys: Keys, sink: LiveSink, on_reconnect: Callable[[], None]) -> Live:
        self.sharded_live = ShardedLive(self, keys, sink, on_reconnect)
        return self.sharded_live

    async def start(self) -> None:
        if not await self.refresh():
            log.warning("the Redis Cluster is unreachable; its slot map is asked for again")

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for commands in self._nodes.values():
            await commands.close()
