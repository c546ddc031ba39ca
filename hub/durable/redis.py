"""Durable Streams held in Redis: one Redis, a Cluster or Sentinel, through the broker's
route. Every change to a stream is one call of `lua/stream.lua` on the stream's slot, so
an append and its producer's state are one atomic step; readers waiting for data are
woken over the stream's pub/sub channel, from any replica.

A fork and its source may live in different slots: the fork's count on the source is
kept by separate calls (a crash between them leaves the source kept longer, never a
fork without its source's data).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from hub.broker import Entry
from hub.broker.commands import Arg, Script
from hub.broker.redis import RedisBroker
from hub.delivery.fanout import FanOut
from hub.durable import jsonmode, offsets
from hub.durable.offsets import offset_at, position
from hub.durable.redis_forks import Forks
from hub.durable.replies import messages, snapshot, text
from hub.durable.store import (
    PAGE,
    Appended,
    Config,
    ConfigConflict,
    ContentTypeMismatch,
    Producer,
    ProducerResult,
    Read,
    SeqConflict,
    Snapshot,
    Store,
    StreamGone,
    StreamNotFound,
    Verdict,
    expiry_of,
    is_json,
    media_type,
)

_SCRIPT = Script(files("hub.durable").joinpath("lua", "stream.lua").read_text())
_UNFORK = b"\0unfork"  # a reply's marker: the call dropped an expired fork of this source


class _Wake:
    """A waiting reader's part in the fan-out: any live entry or resync of its stream's
    channel wakes it (it then reads the stream again)."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()

    def offer(self, channel: str, epoch: int, entry: Entry) -> None:
        self.woken.set()

    def request_resync(self) -> None:
        self.woken.set()


class RedisStore(Store):
    def __init__(
        self, broker: RedisBroker, fanout: FanOut, clock: Callable[[], float] = time.time
    ) -> None:
        self._broker = broker
        self._fanout = fanout
        self._clock = clock
        self._forks = Forks(self._run)

    def _channel(self, name: str) -> str:
        return f"ds:{name}"

    async def _run(self, name: str, *args: Arg) -> list[Any]:
        keys = self._broker.keys
        channel = self._channel(name)
        names = [
            keys.meta(channel),
            keys.stream(channel),
            keys.producers(channel),
            keys.live(channel),
            keys.forks(channel),
        ]
        now = int(self._clock() * 1000)
        write = args[0] not in ("head", "read")  # writes wait for HUB_REPLICAS_ACK replicas
        reply: list[Any] = await self._broker.run(_SCRIPT, names, [args[0], now, *args[1:]], write)
        if len(reply) >= 2 and reply[-2] == _UNFORK:
            # The call dropped `name`, an expired fork: its source is told in its own slot.
            source, reply = text(reply[-1]), reply[:-2]
            await self._forks.unfork(source, name)
        return reply

    async def create(self, name: str, config: Config, initial: bytes) -> tuple[bool, Snapshot]:
        depth, prefix = 0, b""
        if config.forked_from is not None:
            config, depth, prefix = await self._forks.fork(name, config)
        try:
            reply = await self._create(name, config, depth, prefix, initial)
            if text(reply[0]) == "gone" and await self._forks.prune(name, reply[1:]):
                reply = await self._create(name, config, depth, prefix, initial)  # it was freed
        finally:
            if config.forked_from is not None:
                # Counted as a fork before it was made: forgotten again if it was not.
                await self._forks.prune(config.forked_from, [name])
        status = text(reply[0])
        if status == "gone":
            raise StreamGone(name)
        if status == "conflict":
            raise ConfigConflict(name)
        return status == "created", snapshot(reply)

    async def _create(
        self, name: str, config: Config, depth: int, prefix: bytes, initial: bytes
    ) -> list[Any]:
        chunks = [prefix] if prefix else []
        if initial:
            chunk = initial
            if is_json(config.content_type):
                chunk = jsonmode.stored(initial, creating=True)
            chunks += [chunk] if chunk else []
        expires = expiry_of(config.expires_at) if config.expires_at else None
        return await self._run(
            name,
            "create",
            config.content_type,
            media_type(config.content_type),
            "" if config.ttl is None else str(config.ttl),
            "" if expires is None else str(int(expires * 1000)),
            config.expires_at or "",
            "1" if config.closed else "0",
            config.forked_from or "",
            "" if not config.fork_offset else str(position(config.fork_offset)),
            str(config.fork_sub_offset),
            str(position(config.fork_offset)) if config.fork_offset else "0",
            str(depth),
            *chunks,
        )

    async def head(self, name: str) -> Snapshot | None:
        reply = await self._run(name, "head")
        status = text(reply[0])
        if status == "notfound":
            return None
        if status == "gone":
            if await self._forks.prune(name, reply[1:]):
                return None  # its forks were all gone too: it is no more
            raise StreamGone(name)
        return snapshot(reply)

    async def append(
        self,
        name: str,
        data: bytes,
        content_type: str,
        seq: str | None,
        producer: Producer | None,
        close: bool,
    ) -> Appended:
        chunk = data
        if data and is_json(content_type):
            try:
                chunk = jsonmode.stored(data)
            except (jsonmode.InvalidJson, jsonmode.EmptyArray):
                snapshot = await self.head(name)  # a mismatched type is the answer first
                if snapshot is not None and not is_json(snapshot.config.content_type):
                    raise ContentTypeMismatch(snapshot.config.content_type) from None
                raise
        reply = await self._run(
            name,
            "append",
            media_type(content_type),
            seq or "",
            producer.id if producer else "",
            str(producer.epoch) if producer else "",
            str(producer.seq) if producer else "",
            "1" if close else "0",
            self._broker.publish_command,
            *([chunk] if chunk else []),
        )
        return _appended(name, reply, producer, bool(chunk))

    async def read(self, name: str, offset: str) -> Read:
        after = "" if offset == offsets.START else str(position(offset))
        reply = await self._run(name, "read", after, "0", "", PAGE + 1)
        status = text(reply[0])
        if status == "notfound":
            raise StreamNotFound(name)
        if status == "gone":
            raise StreamGone(name)
        now = snapshot(reply)
        found = await self._forks.inherited(reply, offset, None) + messages(reply[8:])
        return Read(found[:PAGE], now.tail, now.closed, len(found) > PAGE)

    async def wait(self, name: str, offset: str, timeout: float) -> Read:
        channel, wake = self._channel(name), _Wake()
        deadline = asyncio.get_running_loop().time() + timeout
        subscribed = self._fanout.listen(channel, wake)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(subscribed)
            found = await self.read(name, offset)  # after subscribing: nothing slips between
            while not found.messages and not found.closed:
                wake.woken.clear()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    async with asyncio.timeout(left):
                        await wake.woken.wait()
                except TimeoutError:
                    break
                found = await self.read(name, offset)
            return found
        except TimeoutError:
            return await self.read(name, offset)
        finally:
            self._fanout.unlisten(channel, wake)

    async def delete(self, name: str) -> bool:
        reply = await self._run(name, "delete", self._broker.publish_command)
        status = text(reply[0])
        if status == "gone":
            raise StreamGone(name)
        if status == "notfound":
            return False
        if status == "kept":  # forks read through it: gone, unless they are all gone too
            await self._forks.prune(name, reply[1:])
            return True
        source = text(reply[1])
        if source:
            await self._forks.unfork(source, name)
        return True


def _appended(name: str, reply: list[Any], producer: Producer | None, wrote: bool) -> Appended:
    status = text(reply[0])
    if status == "notfound":
        raise StreamNotFound(name)
    if status == "gone":
        raise StreamGone(name)
    if status == "ctmismatch":
        raise ContentTypeMismatch(name)
    if status == "seqconflict":
        raise SeqConflict(name)
    tail = offset_at(int(text(reply[1])))
    if status == "ok":
        accepted = ProducerResult(Verdict.ACCEPTED) if producer else None
        return Appended(tail, text(reply[2]) == "1", wrote, accepted)
    if status == "closed":
        return Appended(tail, True, False, None, refused_closed=True)
    if status == "duplicate_closed":
        return Appended(
            tail, True, False, ProducerResult(Verdict.DUPLICATE, last_seq=int(text(reply[2])))
        )
    verdict = Verdict(status)
    numbers = [int(text(v)) for v in reply[2:]]
    result = {
        Verdict.DUPLICATE: lambda: ProducerResult(verdict, last_seq=numbers[0]),
        Verdict.STALE_EPOCH: lambda: ProducerResult(verdict, current_epoch=numbers[0]),
        Verdict.INVALID_EPOCH_SEQ: lambda: ProducerResult(verdict),
        Verdict.SEQUENCE_GAP: lambda: ProducerResult(
            verdict, expected_seq=numbers[0], received_seq=numbers[1]
        ),
    }[verdict]()
    return Appended(tail, False, False, result)
