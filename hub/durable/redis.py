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
from hub.durable.store import (
    MAX_FORK_DEPTH,
    PAGE,
    Appended,
    Config,
    ConfigConflict,
    ContentTypeMismatch,
    ForkTooDeep,
    Message,
    Producer,
    ProducerResult,
    Read,
    SeqConflict,
    Snapshot,
    SourceNotFound,
    Store,
    StreamGone,
    StreamNotFound,
    Verdict,
    expiry_of,
    forked,
    is_json,
    media_type,
    sub_offset_prefix,
)

_SCRIPT = Script(files("hub.durable").joinpath("lua", "stream.lua").read_text())
_UNFORK = b"\0unfork"  # a reply's marker: the call dropped an expired fork of this source


def position(offset: str) -> int:
    return int(offset.split("_", 1)[1])


def offset_at(pos: int) -> str:
    return f"{0:016d}_{pos:016d}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snapshot(reply: list[Any]) -> Snapshot:
    _, tail, closed, content_type, ttl, expires_at = (_text(v) for v in reply[:6])
    config = Config(content_type, int(ttl) if ttl else None, expires_at or None, closed == "1")
    return Snapshot(config, offset_at(int(tail)), closed == "1")


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

    def _channel(self, name: str) -> str:
        return f"ds:{name}"

    async def _run(self, name: str, *args: Arg) -> list[Any]:
        keys = self._broker.keys
        channel = self._channel(name)
        names = [
            keys.meta(channel),
            keys.stream(channel),
            f"{keys.prefix}{{{channel}}}:p",
            keys.live(channel),
            f"{keys.prefix}{{{channel}}}:f",
        ]
        now = int(self._clock() * 1000)
        write = args[0] not in ("head", "read")  # writes wait for HUB_REPLICAS_ACK replicas
        reply: list[Any] = await self._broker.run(_SCRIPT, names, [args[0], now, *args[1:]], write)
        if len(reply) >= 2 and reply[-2] == _UNFORK:
            # The call dropped `name`, an expired fork: its source is told in its own slot.
            source, reply = _text(reply[-1]), reply[:-2]
            await self._unfork(source, name)
        return reply

    async def create(self, name: str, config: Config, initial: bytes) -> tuple[bool, Snapshot]:
        depth, prefix = 0, b""
        if config.forked_from is not None:
            config, depth, prefix = await self._fork(name, config)
        try:
            reply = await self._create(name, config, depth, prefix, initial)
            if _text(reply[0]) == "gone" and await self._prune(name, reply[1:]):
                reply = await self._create(name, config, depth, prefix, initial)  # it was freed
        finally:
            if config.forked_from is not None:
                # Counted as a fork before it was made: forgotten again if it was not.
                await self._prune(config.forked_from, [name])
        status = _text(reply[0])
        if status == "gone":
            raise StreamGone(name)
        if status == "conflict":
            raise ConfigConflict(name)
        return status == "created", _snapshot(reply)

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

    async def _fork(self, name: str, config: Config) -> tuple[Config, int, bytes]:
        """The fork's config completed from its source (which counts `name` among its forks
        from now on), its depth, and what it keeps of an append it forks inside."""
        assert config.forked_from is not None
        source_name = config.forked_from
        reply = await self._run(source_name, "fork", name)
        status = _text(reply[0])
        if status == "notfound":
            raise SourceNotFound(source_name)
        if status == "gone":
            raise StreamGone(source_name)
        if status == "toodeep":
            raise ForkTooDeep(source_name)
        try:
            completed = forked(config, _snapshot(reply))
            prefix = b""
            if config.fork_sub_offset:
                assert completed.fork_offset is not None
                following = await self._following(source_name, completed.fork_offset)
                prefix = sub_offset_prefix(completed, following)
        except BaseException:
            await self._prune(source_name, [name])
            raise
        return completed, int(_text(reply[6])) + 1, prefix

    async def _prune(self, name: str, forks: list[Any]) -> bool:
        """Forgets those of `forks` that do not exist (any more, or not yet: a create that
        failed) among the forks of `name`; True when that dropped `name` (it was gone, and
        they were its last). Counting a fork too many is safe (this undoes it); too few
        would drop bytes a fork reads."""
        freed = False
        for fork in (_text(f) for f in forks):
            reply = await self._run(fork, "read", "", "1", "", 0)  # no bytes, nothing renewed
            if _text(reply[0]) == "notfound" or _text(reply[6]) != name:
                freed = await self._unfork(name, fork) or freed
        return freed

    async def _following(self, name: str, offset: str) -> list[Message]:
        """The messages of stream `name` after `offset`, inherited ones included."""
        after = str(position(offset))
        reply = await self._run(name, "read", after, "1", "", PAGE + 1)
        if _text(reply[0]) != "ok":
            return []
        return await self._inherited(reply, offset, None) + _messages(reply[8:])

    async def _unfork(self, source_name: str, fork: str) -> bool:
        """`fork` no longer reads through `source_name`; a source gone meanwhile is dropped,
        and its own source told in turn. True when `source_name` was dropped."""
        current, dropped = source_name, False
        for _ in range(MAX_FORK_DEPTH + 1):
            reply = await self._run(current, "unfork", fork)
            if _text(reply[0]) != "dropped":
                return dropped
            dropped = dropped or current == source_name
            fork, current = current, _text(reply[1])
            if not current:
                return dropped
        return dropped

    async def head(self, name: str) -> Snapshot | None:
        reply = await self._run(name, "head")
        status = _text(reply[0])
        if status == "notfound":
            return None
        if status == "gone":
            if await self._prune(name, reply[1:]):
                return None  # its forks were all gone too: it is no more
            raise StreamGone(name)
        return _snapshot(reply)

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
        status = _text(reply[0])
        if status == "notfound":
            raise StreamNotFound(name)
        if status == "gone":
            raise StreamGone(name)
        snapshot = _snapshot(reply)
        found = await self._inherited(reply, offset, None) + _messages(reply[8:])
        return Read(found[:PAGE], snapshot.tail, snapshot.closed, len(found) > PAGE)

    async def _inherited(self, reply: list[Any], offset: str, cap: str | None) -> list[Message]:
        """What a stream (its read `reply`) inherits after `offset` from its source, up to
        its fork offset (and `cap`), through every source in turn."""
        source, fork_offset = _text(reply[6]), _text(reply[7])
        if not source or (offset != offsets.START and position(offset) >= int(fork_offset)):
            return []
        limit = int(fork_offset) if cap is None else min(int(fork_offset), position(cap))
        after = "" if offset == offsets.START else str(position(offset))
        # As a fork reads its source: gone or not, renewing nothing.
        upstream = await self._run(source, "read", after, "1", str(limit), PAGE + 1)
        if _text(upstream[0]) != "ok":
            return []
        inherited = await self._inherited(upstream, offset, offset_at(limit))
        return inherited + _messages(upstream[8:])

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
        status = _text(reply[0])
        if status == "gone":
            raise StreamGone(name)
        if status == "notfound":
            return False
        if status == "kept":  # forks read through it: gone, unless they are all gone too
            await self._prune(name, reply[1:])
            return True
        source = _text(reply[1])
        if source:
            await self._unfork(source, name)
        return True


def _messages(flat: list[Any]) -> list[Message]:
    return [
        Message(bytes(flat[i + 1]), offset_at(int(_text(flat[i]).split("-", 1)[0])))
        for i in range(0, len(flat), 2)
    ]


def _appended(name: str, reply: list[Any], producer: Producer | None, wrote: bool) -> Appended:
    status = _text(reply[0])
    if status == "notfound":
        raise StreamNotFound(name)
    if status == "gone":
        raise StreamGone(name)
    if status == "ctmismatch":
        raise ContentTypeMismatch(name)
    if status == "seqconflict":
        raise SeqConflict(name)
    tail = offset_at(int(_text(reply[1])))
    if status == "ok":
        accepted = ProducerResult(Verdict.ACCEPTED) if producer else None
        return Appended(tail, _text(reply[2]) == "1", wrote, accepted)
    if status == "closed":
        return Appended(tail, True, False, None, refused_closed=True)
    if status == "duplicate_closed":
        return Appended(
            tail, True, False, ProducerResult(Verdict.DUPLICATE, last_seq=int(_text(reply[2])))
        )
    verdict = Verdict(status)
    numbers = [int(_text(v)) for v in reply[2:]]
    result = {
        Verdict.DUPLICATE: lambda: ProducerResult(verdict, last_seq=numbers[0]),
        Verdict.STALE_EPOCH: lambda: ProducerResult(verdict, current_epoch=numbers[0]),
        Verdict.INVALID_EPOCH_SEQ: lambda: ProducerResult(verdict),
        Verdict.SEQUENCE_GAP: lambda: ProducerResult(
            verdict, expected_seq=numbers[0], received_seq=numbers[1]
        ),
    }[verdict]()
    return Appended(tail, False, False, result)
