"""Where the Redis broker's calls go: one node (found directly or through Sentinel), or the
nodes of a Redis Cluster. Each route makes the live side that matches it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hub.broker.base import LiveSink
from hub.broker.commands import Arg, Commands, Resolver, Script
from hub.broker.keys import Keys
from hub.broker.live import LiveConnection

# An answer to PING within this, or the node counts as unreachable (readiness).
PING_TIMEOUT = 0.8


class Live(Protocol):
    """The live side: reference-counted subscriptions, resync on every link change."""

    @property
    def alive(self) -> bool: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def subscribe(self, channel: str) -> asyncio.Future[None]: ...

    def unsubscribe(self, channel: str) -> None: ...


class Route(Protocol):
    # PUBLISH on one node; SPUBLISH in a Cluster, where a script's keys and live channel
    # share a slot (and ElastiCache Serverless binds a script's PUBLISH to that slot).
    publish: str

    def groups(self, channels: Sequence[str]) -> list[list[str]]:
        """The channels each publish-script call writes: all at once on one node."""

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        wait: tuple[int, float] | None = None,
    ) -> Any:
        """The script on the node that owns `keys` (all of one slot in a Cluster)."""

    async def reachable(self, replicas: int = 0) -> bool:
        """Every primary answers, with at least `replicas` replicas attached."""

    def live(self, keys: Keys, sink: LiveSink, on_reconnect: Callable[[], None]) -> Live: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def answers(commands: Commands, replicas: int) -> bool:
    """The node answers within PING_TIMEOUT, and has `replicas` replicas attached (a
    publish that must wait for them cannot succeed with fewer)."""
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            if not replicas:
                return bool(await commands.call("PING") == b"PONG")
            info: bytes = await commands.call("INFO", "replication")
    except Exception:  # unreachable, refused, timed out: not ready, whatever the cause
        return False
    for line in info.splitlines():
        if line.startswith(b"connected_slaves:"):
            return int(line.partition(b":")[2]) >= replicas
    return False


class NodeRoute:
    """One Redis: given by URL, or the primary a Sentinel set-up names (`resolve`)."""

    publish = "PUBLISH"

    def __init__(self, resolve: Resolver, *, primary: bool = False, timeout: float = 5.0) -> None:
        self._resolve = resolve
        self._primary = primary
        self.commands = Commands(resolve, timeout, primary=primary)
        self.link: LiveConnection | None = None

    def groups(self, channels: Sequence[str]) -> list[list[str]]:
        return [list(channels)]

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        wait: tuple[int, float] | None = None,
    ) -> Any:
        return await self.commands.run(script, keys, args, wait=wait)

    async def reachable(self, replicas: int = 0) -> bool:
        return await answers(self.commands, replicas)

    def live(self, keys: Keys, sink: LiveSink, on_reconnect: Callable[[], None]) -> Live:
        self.link = LiveConnection(
            self._resolve, keys, sink, on_reconnect=on_reconnect, primary=self._primary
        )
        return self.link

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.commands.close()
