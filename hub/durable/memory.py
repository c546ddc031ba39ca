"""Durable Streams held in this process (the embedded mode): the same semantics as the
Redis store, lost on restart."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hub.durable import jsonmode, offsets
from hub.durable.store import (
    MAX_FORK_DEPTH,
    PAGE,
    PRODUCER_TTL,
    Appended,
    Config,
    ConfigConflict,
    ContentTypeMismatch,
    ForkTooDeep,
    Message,
    Producer,
    ProducerResult,
    ProducerState,
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
    judge,
    media_type,
    sub_offset_prefix,
)


@dataclass(slots=True)
class _Stream:
    config: Config
    touched: float
    messages: list[Message] = field(default_factory=list)
    tail: str = offsets.ZERO
    closed: bool = False
    closed_by: Producer | None = None
    last_seq: str | None = None
    producers: dict[str, ProducerState] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    forks: int = 0  # forks that read through this stream
    gone: bool = False  # deleted or expired while forks still read through it
    depth: int = 0  # how many sources it reads through
    ends: list[str] = field(default_factory=list)  # each message's offset: found by bisection

    def expired(self, now: float) -> bool:
        config = self.config
        if config.expires_at is not None:
            deadline = expiry_of(config.expires_at)
            if deadline is None or now >= deadline:
                return True
        return config.ttl is not None and now >= self.touched + config.ttl

    def store(self, data: bytes, creating: bool = False) -> None:
        if is_json(self.config.content_type):
            data = jsonmode.stored(data, creating)
            if not data:
                return
        self.keep(data)

    def keep(self, data: bytes) -> None:
        self.tail = offsets.advance(self.tail, len(data))
        self.messages.append(Message(data, self.tail))
        self.ends.append(self.tail)

    def own_after(self, offset: str, upto: str | None, limit: int) -> list[Message]:
        """At most `limit` of its own messages after `offset` (and up to `upto`)."""
        first = 0 if offset == offsets.START else bisect.bisect_right(self.ends, offset)
        last = len(self.ends) if upto is None else bisect.bisect_right(self.ends, upto)
        return self.messages[first : min(last, first + limit)]

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class MemoryStore(Store):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._streams: dict[str, _Stream] = {}
        self._clock = clock

    def _get(self, name: str, gone_too: bool = False) -> _Stream | None:
        """The stream; None when there is none (or it expired). A stream gone while forks
        read through it raises StreamGone, unless `gone_too`."""
        stream = self._streams.get(name)
        if stream is not None and not stream.gone and stream.expired(self._clock()):
            self._drop(name)
            stream = self._streams.get(name)
        if stream is not None and stream.gone and not gone_too:
            raise StreamGone(name)
        return stream

    def _drop(self, name: str | None) -> None:
        """Deleted: gone but kept while forks read through it, else forgotten (and each
        source gone before it, once no fork needs it)."""
        while name is not None:
            stream = self._streams.get(name)
            if stream is None:
                return
            stream.wake()
            if stream.forks > 0:
                stream.gone = True
                return
            del self._streams[name]
            name = stream.config.forked_from
            source = self._streams.get(name) if name is not None else None
            if source is None:
                return
            source.forks = max(0, source.forks - 1)
            if not (source.gone and source.forks == 0):
                return

    def _after(
        self, stream: _Stream, offset: str, upto: str | None = None, limit: int = PAGE + 1
    ) -> list[Message]:
        """At most `limit` of a stream's messages after `offset` (and up to `upto`): for a
        fork, its source's up to the fork offset first (through every source in turn),
        then its own."""
        inherited: list[Message] = []
        source_name, fork_offset = stream.config.forked_from, stream.config.fork_offset
        source = self._streams.get(source_name) if source_name is not None else None
        inherits = offset == offsets.START or (fork_offset is not None and offset < fork_offset)
        if source is not None and fork_offset is not None and inherits:
            cap = fork_offset if upto is None else min(fork_offset, upto)
            inherited = self._after(source, offset, cap, limit)
        own = stream.own_after(offset, upto, limit - len(inherited))
        return inherited + own

    def _fork_config(self, config: Config) -> Config:
        """A fork's config completed from its source: content type, fork offset, expiry."""
        assert config.forked_from is not None
        source = self._get(config.forked_from, gone_too=True)
        if source is None:
            raise SourceNotFound(config.forked_from)
        if source.gone:
            raise StreamGone(config.forked_from)
        if source.depth >= MAX_FORK_DEPTH:
            raise ForkTooDeep(config.forked_from)
        return forked(config, self._snapshot(source))

    def _sub_offset_prefix(self, config: Config) -> bytes:
        assert config.forked_from is not None
        assert config.fork_offset is not None
        source = self._streams[config.forked_from]
        return sub_offset_prefix(config, self._after(source, config.fork_offset))

    def _snapshot(self, stream: _Stream) -> Snapshot:
        return Snapshot(stream.config, stream.tail, stream.closed)

    async def create(self, name: str, config: Config, initial: bytes) -> tuple[bool, Snapshot]:
        existing = self._get(name)
        if existing is not None:
            wanted = config
            if config.forked_from is not None and not config.content_type:
                wanted = Config(existing.config.content_type, *_rest(config))
            if not wanted.same_as(existing.config):
                raise ConfigConflict(name)
            return False, self._snapshot(existing)
        if config.forked_from is not None:
            config = self._fork_config(config)
        stream = _Stream(config, self._clock(), closed=config.closed)
        if config.fork_offset is not None:
            stream.tail = config.fork_offset
        if config.fork_sub_offset:
            stream.keep(self._sub_offset_prefix(config))
        if initial:
            stream.store(initial, creating=True)
        if config.forked_from is not None:
            source = self._streams[config.forked_from]
            source.forks += 1
            stream.depth = source.depth + 1
        self._streams[name] = stream
        return True, self._snapshot(stream)

    async def head(self, name: str) -> Snapshot | None:
        stream = self._get(name)
        return None if stream is None else self._snapshot(stream)

    async def append(
        self,
        name: str,
        data: bytes,
        content_type: str,
        seq: str | None,
        producer: Producer | None,
        close: bool,
    ) -> Appended:
        stream = self._get(name)
        if stream is None:
            raise StreamNotFound(name)
        if stream.closed:
            return _closed_answer(stream, producer)
        if data and media_type(content_type) != media_type(stream.config.content_type):
            raise ContentTypeMismatch(stream.config.content_type)
        verdict = None
        if producer is not None:
            self._forget_old_producers(stream)
            verdict = judge(stream.producers.get(producer.id), producer)
            if verdict.verdict is not Verdict.ACCEPTED:
                return Appended(stream.tail, stream.closed, False, verdict)
        if seq is not None and stream.last_seq is not None and seq <= stream.last_seq:
            raise SeqConflict(seq)
        if data:
            stream.store(data)
        if producer is not None:
            stream.producers[producer.id] = ProducerState(
                producer.epoch, producer.seq, self._clock()
            )
        if seq is not None:
            stream.last_seq = seq
        if close:
            stream.closed, stream.closed_by = True, producer
        stream.touched = self._clock()
        stream.wake()
        return Appended(stream.tail, stream.closed, bool(data), verdict)

    def _forget_old_producers(self, stream: _Stream) -> None:
        now = self._clock()
        for key in [k for k, s in stream.producers.items() if now - s.updated > PRODUCER_TTL]:
            del stream.producers[key]

    async def read(self, name: str, offset: str) -> Read:
        stream = self._get(name)
        if stream is None:
            raise StreamNotFound(name)
        stream.touched = self._clock()
        found = self._after(stream, offset)
        return Read(found[:PAGE], stream.tail, stream.closed, len(found) > PAGE)

    async def wait(self, name: str, offset: str, timeout: float) -> Read:
        stream = self._get(name)
        if stream is None:
            raise StreamNotFound(name)
        found = self._after(stream, offset)
        if not found and not stream.closed:
            waiter = asyncio.get_running_loop().create_future()
            stream.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in stream.waiters:
                    stream.waiters.remove(waiter)
        return await self.read(name, offset)

    async def delete(self, name: str) -> bool:
        if self._get(name) is None:
            return False
        self._drop(name)
        return True


def _rest(config: Config) -> tuple[int | None, str | None, bool, str | None, str | None, int]:
    return (
        config.ttl,
        config.expires_at,
        config.closed,
        config.forked_from,
        config.fork_offset,
        config.fork_sub_offset,
    )


def _closed_answer(stream: _Stream, producer: Producer | None) -> Appended:
    """An append to a closed stream: the producer request that closed it is a duplicate,
    anything else is refused."""
    if producer is not None and producer == stream.closed_by:
        duplicate = ProducerResult(Verdict.DUPLICATE, last_seq=producer.seq)
        return Appended(stream.tail, True, False, duplicate)
    return Appended(stream.tail, True, False, None, refused_closed=True)
