"""What a Durable Streams store keeps and answers, whatever holds it (memory or Redis).

A stream is a content type, its messages (each append is one message, ending at
its offset), a tail offset, an optional TTL (sliding: every read and append
renews it) or absolute expiry, whether it is closed (and by which producer
request), the last `Stream-Seq`, and the state of each idempotent producer.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

from hub.durable import jsonmode, offsets

# Idempotent producers are remembered this long after their last append.
PRODUCER_TTL = 7 * 24 * 3600.0
# Messages one read returns at most (the next read continues from where it stopped).
PAGE = 1000
# Sources a fork may read through (a fork of a fork of …): reads and deletes walk them.
MAX_FORK_DEPTH = 32


def media_type(content_type: str | None) -> str:
    """The media type alone, lower-cased: `Application/JSON; charset=utf-8` is
    `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    return media_type(content_type) == "application/json"


@dataclass(frozen=True, slots=True)
class Message:
    data: bytes
    offset: str  # the offset after it


@dataclass(frozen=True, slots=True)
class Config:
    """What a create asks for; a second create must ask for the same."""

    content_type: str
    ttl: int | None = None
    expires_at: str | None = None
    closed: bool = False
    forked_from: str | None = None  # a fork: the source stream's name
    fork_offset: str | None = None  # where it forks (None: the source's tail)
    # Bytes (or, on a JSON stream, messages) of the source's next append the fork keeps.
    fork_sub_offset: int = 0

    def same_as(self, other: Config) -> bool:
        return (
            media_type(self.content_type) == media_type(other.content_type)
            and self.ttl == other.ttl
            and self.expires_at == other.expires_at
            and self.closed == other.closed
            and self.forked_from == other.forked_from
            and self.fork_offset in (None, other.fork_offset)
            and self.fork_sub_offset == other.fork_sub_offset
        )


@dataclass(frozen=True, slots=True)
class Producer:
    id: str
    epoch: int
    seq: int


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE_EPOCH = "stale_epoch"
    INVALID_EPOCH_SEQ = "invalid_epoch_seq"
    SEQUENCE_GAP = "sequence_gap"
    STREAM_CLOSED = "stream_closed"


@dataclass(frozen=True, slots=True)
class ProducerResult:
    verdict: Verdict
    last_seq: int = 0  # DUPLICATE: the highest accepted
    current_epoch: int = 0  # STALE_EPOCH
    expected_seq: int = 0  # SEQUENCE_GAP
    received_seq: int = 0


@dataclass(slots=True)
class ProducerState:
    epoch: int
    last_seq: int
    updated: float


def judge(state: ProducerState | None, producer: Producer) -> ProducerResult:
    """Kafka-style fencing and deduplication of one producer request (the protocol's
    validation logic)."""
    epoch, seq = producer.epoch, producer.seq
    if state is None:
        if seq != 0:
            return ProducerResult(Verdict.SEQUENCE_GAP, expected_seq=0, received_seq=seq)
        return ProducerResult(Verdict.ACCEPTED)
    if epoch < state.epoch:
        return ProducerResult(Verdict.STALE_EPOCH, current_epoch=state.epoch)
    if epoch > state.epoch:
        if seq != 0:
            return ProducerResult(Verdict.INVALID_EPOCH_SEQ)
        return ProducerResult(Verdict.ACCEPTED)
    if seq <= state.last_seq:
        return ProducerResult(Verdict.DUPLICATE, last_seq=state.last_seq)
    if seq == state.last_seq + 1:
        return ProducerResult(Verdict.ACCEPTED)
    return ProducerResult(Verdict.SEQUENCE_GAP, expected_seq=state.last_seq + 1, received_seq=seq)


@dataclass(slots=True)
class Snapshot:
    """A stream's metadata as a request sees it."""

    config: Config
    tail: str
    closed: bool
    ttl_left: int | None = None


@dataclass(slots=True)
class Appended:
    """The outcome of an append or a close: the tail after it, whether the stream is now
    closed, and the producer's verdict (None without producer headers)."""

    tail: str
    closed: bool = False
    wrote: bool = True
    producer: ProducerResult | None = None
    refused_closed: bool = False  # the stream was closed before this request


@dataclass(slots=True)
class Read:
    messages: list[Message] = field(default_factory=list)
    tail: str = ""
    closed: bool = False
    more: bool = False  # a page's worth: more follows after the last message


class StreamNotFound(Exception):
    pass


class StreamGone(Exception):
    """Deleted or expired while forks still read through it (410; its name is not free)."""


class SourceNotFound(Exception):
    pass


class InvalidForkOffset(Exception):
    pass


class ForkTooDeep(Exception):
    pass


class ConfigConflict(Exception):
    pass


class ContentTypeMismatch(Exception):
    pass


class SeqConflict(Exception):
    pass


def expiry_of(expires_at: str) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch; None if it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def forked(config: Config, source: Snapshot) -> Config:
    """A fork's config completed from its source: the content type (which must be the
    source's), the fork offset (the source's tail by default, never past it) and the
    expiry (the source's unless the fork sets one)."""
    content_type = config.content_type or source.config.content_type
    if media_type(content_type) != media_type(source.config.content_type):
        raise ContentTypeMismatch(source.config.content_type)
    fork_offset = config.fork_offset or source.tail
    if offsets.position(fork_offset) > offsets.position(source.tail):
        raise InvalidForkOffset(fork_offset)
    ttl, expires_at = config.ttl, config.expires_at
    if ttl is None and expires_at is None:
        ttl, expires_at = source.config.ttl, source.config.expires_at
    return Config(
        content_type,
        ttl,
        expires_at,
        config.closed,
        config.forked_from,
        fork_offset,
        config.fork_sub_offset,
    )


def sub_offset_prefix(config: Config, following: list[Message]) -> bytes:
    """What a fork inside an append keeps of it (`following`: the source's messages after
    the fork offset): its first `fork_sub_offset` bytes, or on a JSON stream its first
    messages."""
    if not following:
        raise InvalidForkOffset("no append after the fork offset")
    first, count = following[0].data, config.fork_sub_offset
    if is_json(config.content_type):
        values = jsonmode.messages(first)
        if count > len(values):
            raise InvalidForkOffset("the sub-offset is past the append's messages")
        return b"".join(value + b"," for value in values[:count])
    if count > len(first):
        raise InvalidForkOffset("the sub-offset is past the append's bytes")
    return first[:count]


class Store(ABC):
    @abstractmethod
    async def create(self, name: str, config: Config, initial: bytes) -> tuple[bool, Snapshot]:
        """(created, the stream): an existing stream with the same config is answered as
        it is; another config raises ConfigConflict."""

    @abstractmethod
    async def head(self, name: str) -> Snapshot | None: ...

    @abstractmethod
    async def append(
        self,
        name: str,
        data: bytes,
        content_type: str,
        seq: str | None,
        producer: Producer | None,
        close: bool,
    ) -> Appended:
        """Appends `data` (may be empty only with `close`), atomically with the producer's
        state; raises StreamNotFound, ContentTypeMismatch, SeqConflict, or the JSON
        errors of `hub.durable.jsonmode`."""

    @abstractmethod
    async def read(self, name: str, offset: str) -> Read:
        """Messages after `offset` (`-1`: all), the tail and whether the stream is closed;
        renews a sliding TTL."""

    @abstractmethod
    async def wait(self, name: str, offset: str, timeout: float) -> Read:
        """As `read`, waiting up to `timeout` seconds for a message after `offset` (or the
        stream's close)."""

    @abstractmethod
    async def delete(self, name: str) -> bool: ...

    async def close(self) -> None:
        return None
