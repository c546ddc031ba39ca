"""Redis behind Sentinel: the primary is asked of the sentinels before every connection,
and a watch moves both connections to a newly elected primary without waiting for the
old one to fail (a graceful failover leaves it running as a replica).

Discovery is redis-py's: it checks that the sentinels agree the primary is up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from hub.broker.routes import NodeRoute
from hub.redisurl import Topology
from hub.tasks import stop

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5
_SENTINEL_TIMEOUT = 1.0


class SentinelResolver:
    def __init__(self, topology: Topology) -> None:
        self._master = topology.master
        self._data = topology.data
        addresses = [(node["host"], node["port"]) for node in topology.nodes]
        credentials: dict[str, Any] = {
            name: topology.nodes[0][name]
            for name in ("username", "password")
            if name in topology.nodes[0]
        }
        # Sentinels that ask for no password are asked without one; the data nodes' are
        # tried when they do. No retries: redis-py's default retries a refused AUTH (a
        # ConnectionError) with backoff, seconds per sentinel before the next is asked.
        plain: dict[str, Any] = {
            "socket_timeout": _SENTINEL_TIMEOUT,
            "socket_connect_timeout": _SENTINEL_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
        }
        self._asked = [Sentinel(addresses, sentinel_kwargs=plain)]  # type: ignore[no-untyped-call]
        if credentials:
            authed: dict[str, Any] = {**plain, **credentials}
            self._asked.append(Sentinel(addresses, sentinel_kwargs=authed))  # type: ignore[no-untyped-call]

    async def primary(self) -> tuple[str, int]:
        failure: Exception | None = None
        for sentinel in list(self._asked):
            try:
                host, port = await sentinel.discover_master(self._master)
            except RedisError as exc:
                failure = exc
                continue
            if sentinel is not self._asked[0]:  # ask the way that answered first next time
                self._asked.remove(sentinel)
                self._asked.insert(0, sentinel)
            return str(host), int(port)
        raise ConnectionError(f"no sentinel names a primary for {self._master!r}: {failure}")

    async def __call__(self) -> dict[str, Any]:
        host, port = await self.primary()
        return {**self._data, "host": host, "port": port}

    async def close(self) -> None:
        for sentinel in self._asked:
            for node in sentinel.sentinels:
                await node.aclose()


class SentinelRoute(NodeRoute):
    def __init__(self, topology: Topology, timeout: float = 5.0) -> None:
        self._sentinels = SentinelResolver(topology)
        super().__init__(self._sentinels, primary=True, timeout=timeout)
        self._watch: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._watch = asyncio.create_task(self._follow(), name="hub-sentinel-watch")

    async def _follow(self) -> None:
        """Moves the connections to the primary the sentinels name, once they name another."""
        while not self._closing:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                primary = await self._sentinels.primary()
            except ConnectionError:
                continue  # no answer now: the connections' own failures tell the rest
            if self.commands.address not in (None, primary):
                log.warning("Sentinel names a new primary %s:%d; moving there", *primary)
                self.commands.drop()
            if self.link is not None and self.link.address not in (None, primary):
                self.link.drop_link()
                self.link.retry_now()  # a link down may be waiting up to 2 s to retry

    async def close(self) -> None:
        self._closing = True
        await stop(self._watch)
        await super().close()
        await self._sentinels.close()
