"""The Redis broker: history in Redis Streams, live entries over pub/sub.

Each publish is one Lua script per slot (one for everything on a single Redis):
XADD + EXPIRE + PUBLISH per target, and the idempotency record, so a message is
in every target's history before anyone can see it live, and a failed call
writes nothing. In a Cluster, a message to channels on several shards is
answered once every channel is written; a retry with the same Idempotency-Key
writes only the channels the first attempt did not (each channel keeps its own
record of the key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.exceptions import ResponseError

from hub.broker.base import Broker, Entry, HistoryPage, Idempotency, LiveSink
from hub.broker.commands import Arg, Commands, Script, fixed
from hub.broker.keys import Keys
from hub.broker.routes import Live, NodeRoute, Route
from hub.broker.writes import Limits, assemble, by_channel, read_reply, script_call
from hub.config import Settings
from hub.errors import BrokerUnavailable, ConfigError, HubError, IdempotencyConflict
from hub.message import Message
from hub.redisurl import Topology, parse_topology

log = logging.getLogger(__name__)

# What the hub's own connection (hub.broker.commands) raises when Redis cannot be reached:
# OSError (refused, reset or lost: ConnectionError; no answer in time: TimeoutError; TLS;
# a name not resolved; too few replicas confirmed), and UnicodeError for a host name that
# cannot even be encoded. Redis's own refusals are ResponseError, the one class hiredis
# makes of error replies.
_UNREACHABLE = (OSError, UnicodeError)
# Refusals that pass (a failover, a full or loading server): answered 503, retried by clients.
_TRANSIENT_CODES = {
    "READONLY", "OOM", "MASTERDOWN", "TRYAGAIN", "LOADING", "BUSY", "CLUSTERDOWN", "NOREPLICAS",
}  # fmt: skip
_CONFLICT = "the key was used for a different request"
# A read routed like any script (by its key's slot).
_GET = Script("return redis.call('GET', KEYS[1])")


def _script(name: str) -> str:
    return files("hub.broker").joinpath("lua", name).read_text()


async def make_route(topology: Topology) -> Route:
    """The route for the URL's topology; one node that says it is in a Cluster is a seed."""
    if topology.kind == "sentinel":
        from hub.broker.sentinel import SentinelRoute

        return SentinelRoute(topology)
    if topology.kind == "single" and not await _in_cluster(topology.nodes[0]):
        return NodeRoute(fixed(topology.nodes[0]))
    if topology.nodes[0].get("db"):
        raise ConfigError("HUB_REDIS_URL: a Redis Cluster has only database 0; drop the /db")
    from hub.broker.cluster import ClusterRoute

    return ClusterRoute(Topology("cluster", topology.nodes))


async def _in_cluster(options: dict[str, Any]) -> bool:
    """Asked once at start; a node unreachable then is taken for a single Redis."""
    # No SELECT: a Cluster refuses any, and the database is checked once it is known.
    probe = Commands({k: v for k, v in options.items() if k != "db"}, timeout=2)
    try:
        info: bytes = await probe.call("INFO", "cluster")
    except (*_UNREACHABLE, ResponseError) as exc:
        log.warning("could not ask Redis whether it is a Cluster (%s); taking one node", exc)
        return False
    finally:
        await probe.close()
    return b"cluster_enabled:1" in info


class RedisBroker(Broker):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.keys = Keys(settings.key_prefix)
        self._limits = Limits.of(settings)
        self._wait = (
            (settings.replicas_ack, settings.replicas_ack_timeout)
            if settings.replicas_ack > 0
            else None
        )
        self._publish = Script(_script("publish.lua"))
        self._history = Script(_script("history.lua"))
        self.route: Route | None = None
        self._live: Live | None = None
        self.reconnects = 0

    async def start(self, sink: LiveSink) -> None:
        self.route = await make_route(parse_topology(self._settings.redis_url))
        await self.route.start()
        self._live = self.route.live(self.keys, sink, self._count_reconnect)
        self._live.start()

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def close(self) -> None:
        if self._live is not None:
            await self._live.close()
        if self.route is not None:
            await self.route.close()

    async def publish(
        self, messages: Sequence[Message], idempotency: Idempotency | None = None
    ) -> list[dict[str, str]]:
        route = self._route()
        targets = by_channel(messages)
        groups = route.groups(list(targets))
        if idempotency is not None and len(groups) > 1:
            await self._check_key(idempotency, list(targets))

        async def write(channels: list[str]) -> dict[str, list[str]] | None:
            keys, args = script_call(
                self.keys, channels, targets, messages, self._limits, idempotency, route.publish
            )
            return read_reply(channels, await self._call(self._publish, keys, args, self._wait))

        if len(groups) == 1:
            replies = [await write(groups[0])]
        else:
            # Every group is written (or fails) before the answer: a retry knows where it stands.
            outcomes = await asyncio.gather(*map(write, groups), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            replies = outcomes  # type: ignore[assignment]
        ids: dict[str, list[str]] = {}
        for reply in replies:
            if reply is None:
                raise IdempotencyConflict(_CONFLICT)
            ids.update(reply)
        return assemble(messages, targets, ids)

    async def _check_key(self, idempotency: Idempotency, channels: list[str]) -> None:
        """On several shards the key's records are checked before anything is written, so
        that a key reused for another request writes nothing (one Redis: in the script)."""
        records = await asyncio.gather(
            *(self._call(_GET, [self.keys.idempotency(idempotency.key, c)], []) for c in channels)
        )
        prefix = idempotency.fingerprint.encode() + b"\n"
        if any(record is not None and not record.startswith(prefix) for record in records):
            raise IdempotencyConflict(_CONFLICT)

    async def recorded(self, key: str, channel: str) -> str | None:
        record = await self._call(_GET, [self.keys.idempotency(key, channel)], [])
        if record is None:
            return None
        ids = record.split(b"\n", 1)[-1].split(b",")
        return ids[0].decode() if ids[0] else None

    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        keys = [self.keys.stream(channel), self.keys.meta(channel)]
        args: list[str | int] = ["", limit, ""] if after is None else [after, limit, after + 1]
        epoch, top, anchor, rows = await self._call(self._history, keys, args)
        if not epoch:
            return HistoryPage(0, 0, [])
        entries = []
        for raw_id, fields in rows:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            offset = int(raw_id.split(b"-", 1)[0])
            entries.append(
                Entry.create(
                    offset, values[b"e"].decode(), values[b"d"].decode(), int(values.get(b"t", 0))
                )
            )
        # Stamp 0 (the first entry's `p`, or a stamp that happened to be 0) tells nothing.
        return HistoryPage(int(epoch), int(top), entries, int(anchor or 0) or None)

    async def run(
        self, script: Script, keys: list[str], args: Sequence[Arg], write: bool = False
    ) -> Any:
        """A Lua script of another part of the hub (Durable Streams) on the slot of `keys`,
        with the broker's error mapping; a `write` waits for `replicas_ack` replicas as a
        publish does. The command that publishes is `publish_command`."""
        return await self._call(script, keys, args, self._wait if write else None)

    @property
    def publish_command(self) -> str:
        return self._route().publish

    def _route(self) -> Route:
        assert self.route is not None, "start() first"
        return self.route

    async def _call(
        self,
        script: Script,
        keys: list[str],
        args: Sequence[Arg],
        wait: tuple[int, float] | None = None,
    ) -> Any:
        try:
            return await self._route().run(script, keys, args, wait)
        except _UNREACHABLE as exc:
            log.warning("Redis is unreachable: %s", exc)
            raise BrokerUnavailable("the broker is unreachable; retry later") from exc
        except ResponseError as exc:
            if str(exc).split(" ", 1)[0] in _TRANSIENT_CODES:
                log.warning("Redis cannot take writes now: %s", exc)
                raise BrokerUnavailable("the broker cannot take this now; retry later") from exc
            log.error("Redis refused a hub script: %s", exc)
            raise HubError("the broker refused the operation (see the hub's log)") from exc

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        assert self._live is not None, "start() first"
        return self._live.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        if self._live is not None:
            self._live.unsubscribe(channel)

    async def ready(self) -> bool:
        if self._live is None or not self._live.alive or self.route is None:
            return False
        return await self.route.reachable(self._settings.replicas_ack)
