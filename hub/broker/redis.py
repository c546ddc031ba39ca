"""The Redis broker: history in Redis Streams, live entries over pub/sub.

Each publish is one Lua script (XADD + EXPIRE + PUBLISH per target, and the
idempotency record), so a message is in every target's history before anyone
can see it live, and a failed publish writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.exceptions import ResponseError

from hub.broker.base import Broker, Entry, HistoryPage, Idempotency, LiveSink
from hub.broker.commands import Commands, Script
from hub.broker.keys import Keys
from hub.broker.live import LiveConnection
from hub.config import Settings
from hub.errors import BrokerUnavailable, HubError, IdempotencyConflict
from hub.message import Message

log = logging.getLogger(__name__)

# What the hub's own connection (hub.broker.commands) raises when Redis cannot be reached:
# OSError (refused, reset or lost: ConnectionError; no answer in time: TimeoutError; TLS;
# a name not resolved), and UnicodeError for a host name that cannot even be encoded.
# Redis's own refusals are ResponseError, the one class hiredis makes of error replies.
_UNREACHABLE = (OSError, UnicodeError)
# Refusals that pass (a failover, a full or loading server): answered 503, retried by clients.
_TRANSIENT_CODES = {"READONLY", "OOM", "MASTERDOWN", "TRYAGAIN", "LOADING", "BUSY", "CLUSTERDOWN"}


def _script(name: str) -> str:
    return files("hub.broker").joinpath("lua", name).read_text()


class RedisBroker(Broker):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.keys = Keys(settings.key_prefix)
        self._commands = Commands(settings.redis_url, timeout=5)
        self._publish = Script(_script("publish.lua"))
        self._history = Script(_script("history.lua"))
        self._live: LiveConnection | None = None
        self.reconnects = 0

    async def start(self, sink: LiveSink) -> None:
        self._live = LiveConnection(
            self._settings.redis_url, self.keys, sink, on_reconnect=self._count_reconnect
        )
        self._live.start()

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        if self.on_reconnect is not None:
            self.on_reconnect()

    async def close(self) -> None:
        if self._live is not None:
            await self._live.close()
        await self._commands.close()

    async def publish(
        self, messages: Sequence[Message], idempotency: Idempotency | None = None
    ) -> list[dict[str, str]]:
        s = self._settings
        keys: list[str] = []
        args: list[str | int] = [
            s.history_max_len,
            s.history_ttl,
            s.history_meta_ttl,
            s.idempotency_ttl,
            idempotency.fingerprint if idempotency else "",
            len(messages),
        ]
        for message in messages:
            args += [len(message.channels), message.event, message.data]
            for channel in message.channels:
                keys += [self.keys.stream(channel), self.keys.meta(channel)]
                args.append(self.keys.live(channel))
        if idempotency is not None:
            keys.append(self.keys.idempotency(idempotency.key))
        reply = await self._call(self._publish, keys, args)
        if reply[0] == b"dup":
            fingerprint, _, ids = reply[1].decode().partition("\n")
            if idempotency is None or fingerprint != idempotency.fingerprint:
                raise IdempotencyConflict("the key was used for a different request")
            flat = ids.split(",")
        else:
            flat = [raw.decode() for raw in reply[1:]]
        results: list[dict[str, str]] = []
        position = 0
        for message in messages:
            results.append(dict(zip(message.channels, flat[position:], strict=False)))
            position += len(message.channels)
        return results

    async def history(self, channel: str, after: int | None, limit: int) -> HistoryPage:
        keys = [self.keys.stream(channel), self.keys.meta(channel)]
        epoch, top, rows = await self._call(
            self._history, keys, ["" if after is None else after, limit]
        )
        if not epoch:
            return HistoryPage(0, 0, [])
        entries = []
        for raw_id, fields in rows:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            offset = int(raw_id.split(b"-", 1)[0])
            entries.append(Entry.create(offset, values[b"e"].decode(), values[b"d"].decode()))
        return HistoryPage(int(epoch), int(top), entries)

    async def _call(self, script: Script, keys: list[str], args: list[str | int]) -> list[Any]:
        try:
            reply = await self._commands.run(script, keys, args)
        except _UNREACHABLE as exc:
            log.warning("Redis is unreachable: %s", exc)
            raise BrokerUnavailable("the broker is unreachable; retry later") from exc
        except ResponseError as exc:
            if str(exc).split(" ", 1)[0] in _TRANSIENT_CODES:
                log.warning("Redis cannot take writes now: %s", exc)
                raise BrokerUnavailable("the broker cannot take this now; retry later") from exc
            log.error("Redis refused a hub script: %s", exc)
            raise HubError("the broker refused the operation (see the hub's log)") from exc
        return reply  # type: ignore[no-any-return]

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        assert self._live is not None, "start() first"
        return self._live.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        if self._live is not None:
            self._live.unsubscribe(channel)

    async def ready(self) -> bool:
        if self._live is None or not self._live.alive:
            return False
        try:
            async with asyncio.timeout(2):
                return bool(await self._commands.call("PING") == b"PONG")
        except (*_UNREACHABLE, ResponseError):  # asyncio's timeout is a TimeoutError too
            return False
