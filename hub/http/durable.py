"""Durable Streams at `/v1/stream/{name}` (`HUB_DURABLE_STREAMS`): create, append, close,
metadata and delete; reads are `hub.http.durable_read`'s.

A publisher token whose `publish` globs match `stream:<name>` may do anything to
the stream; a subscriber token whose `streams` claim matches may read it.
"""

from __future__ import annotations

import base64
import re

from aiohttp import web

from hub.channels import allowed
from hub.durable import offsets
from hub.durable.jsonmode import EmptyArray, InvalidJson
from hub.durable.store import (
    MAX_FORK_DEPTH,
    Appended,
    Config,
    ConfigConflict,
    ContentTypeMismatch,
    ForkTooDeep,
    InvalidForkOffset,
    Producer,
    ProducerResult,
    SeqConflict,
    Snapshot,
    SourceNotFound,
    Store,
    StreamGone,
    StreamNotFound,
    Verdict,
    expiry_of,
)
from hub.errors import HubError, Unauthorized
from hub.http.body import read_body_within
from hub.http.state import HUB

STORE = web.AppKey("durable_store", Store)
ANONYMOUS = web.AppKey("durable_anonymous", bool)
PREFIX = "/v1/stream/"
OCTET_STREAM = "application/octet-stream"
# Bounded digits: Python's int() refuses numbers of over 4,300 digits with an error.
_INTEGER = re.compile(r"0|[1-9][0-9]{0,15}")
_STRICT = re.compile(r"[0-9]{1,16}")
_MAX_TTL = 10 * 366 * 24 * 3600  # ten years
_MAX_NAME = 1024
_MAX_TOKEN_TEXT = 256  # a Producer-Id, a Stream-Seq
# Body uploads must be whole within this long: a trickled body holds no connection.
BODY_TIMEOUT = 30.0
_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
_SAFE_INTEGER = 2**53 - 1
# Every answer: not sniffed, readable cross-origin with a bearer token (no cookies: `*`).
BROWSER_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": (
        "content-type, authorization, if-none-match, Stream-Seq, Stream-TTL, "
        "Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq"
    ),
    "Access-Control-Expose-Headers": (
        "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, "
        "Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, "
        "etag, content-type, location, stream-sse-data-encoding"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


class DurableError(HubError):
    """A refusal with the headers the protocol gives it; `refusal` picks the status."""

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self._headers = headers or {}

    def headers(self) -> dict[str, str]:
        return self._headers


class _BadRequest(DurableError):
    status = 400
    title = "Bad request"


class _Forbidden(DurableError):
    status = 403
    title = "Forbidden"


class _NotFound(DurableError):
    status = 404
    title = "Not found"


class _Conflict(DurableError):
    status = 409
    title = "Conflict"


class _Gone(DurableError):
    status = 410
    title = "Gone"


_BY_STATUS: dict[int, type[DurableError]] = {
    400: _BadRequest,
    403: _Forbidden,
    404: _NotFound,
    409: _Conflict,
    410: _Gone,
}


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> DurableError:
    return _BY_STATUS[status](detail, headers)


def name_of(request: web.Request) -> str:
    """The stream's name: UTF-8 text without control characters, 1,024 characters at most
    (it becomes Redis keys and a pub/sub channel)."""
    name = request.match_info["name"]
    if len(name) > _MAX_NAME or not text_ok(name):
        raise refusal(400, "a stream name is UTF-8 text of 1-1024 characters")
    return name


def text_ok(value: str) -> bool:
    """Encodable as UTF-8 (no lone surrogate from undecodable bytes) and printable."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def authorize(request: web.Request, write: bool, name: str | None = None) -> None:
    """The request's bearer token may do this to the stream `name` (the request's own by
    default); Unauthorized or 403 else."""
    if request.app[ANONYMOUS]:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required")
    name = name_of(request) if name is None else name
    hub, stream = request.app[HUB], f"stream:{name}"
    try:
        publisher = hub.publisher_tokens.publisher(token.strip())
    except Unauthorized:
        if write:
            raise
        claims = hub.subscriber_tokens.claims(token.strip())
        grants = claims.get("streams", [])
        if not isinstance(grants, list) or not allowed(name, [str(g) for g in grants]):
            raise refusal(403, f"the token does not allow reading {name!r}") from None
        return
    if not allowed(stream, publisher.grants):
        raise refusal(403, f"the token does not allow {stream!r}")


def tail_headers(snapshot: Snapshot) -> dict[str, str]:
    headers = {"Content-Type": snapshot.config.content_type, "Stream-Next-Offset": snapshot.tail}
    if snapshot.closed:
        headers["Stream-Closed"] = "true"
    return headers


async def create(request: web.Request) -> web.Response:
    authorize(request, write=True)
    forked_from, fork_offset, sub_offset = _fork(request)
    if forked_from is not None:
        authorize(request, write=False, name=forked_from)  # a fork shows its source's bytes
    content_type = request.headers.get("Content-Type", "").strip()
    if not _MEDIA_TYPE.match(content_type):
        content_type = "" if forked_from else OCTET_STREAM  # a fork takes its source's
    ttl_header = request.headers.get("Stream-TTL")
    expires_at = request.headers.get("Stream-Expires-At")
    if ttl_header is not None and expires_at is not None:
        raise refusal(400, "give Stream-TTL or Stream-Expires-At, not both")
    if ttl_header is not None and not (
        _INTEGER.fullmatch(ttl_header) and int(ttl_header) <= _MAX_TTL
    ):
        raise refusal(400, "Stream-TTL must be a whole number of seconds, ten years at most")
    if expires_at is not None and expiry_of(expires_at) is None:
        raise refusal(400, "Stream-Expires-At must be an RFC 3339 timestamp")
    ttl = int(ttl_header) if ttl_header is not None else None
    closed = request.headers.get("Stream-Closed") == "true"
    config = Config(content_type, ttl, expires_at, closed, forked_from, fork_offset, sub_offset)
    body = await read_body_within(request, request.app[HUB].settings.max_body_bytes, BODY_TIMEOUT)
    try:
        created, snapshot = await request.app[STORE].create(name_of(request), config, body)
    except tuple(_CREATE_REFUSALS) as exc:
        raise _refusal(exc, _CREATE_REFUSALS) from None
    headers = tail_headers(snapshot)
    if created:
        headers["Location"] = str(request.url)
    return web.Response(status=201 if created else 200, headers=headers)


def _fork(request: web.Request) -> tuple[str | None, str | None, int]:
    """`Stream-Forked-From` (a stream's path), `Stream-Fork-Offset` and
    `Stream-Fork-Sub-Offset`."""
    source = request.headers.get("Stream-Forked-From")
    offset = request.headers.get("Stream-Fork-Offset")
    sub_offset = request.headers.get("Stream-Fork-Sub-Offset")
    if sub_offset is not None:
        if source is None:
            raise refusal(400, "Stream-Fork-Sub-Offset needs Stream-Forked-From")
        if not _INTEGER.fullmatch(sub_offset) or int(sub_offset) > _SAFE_INTEGER:
            raise refusal(400, "Stream-Fork-Sub-Offset must be a whole number")
    if offset is not None:
        offset = offsets.canonical(offset)
        if offset is None:
            raise refusal(400, "Stream-Fork-Offset is not an offset")
    if source is None:
        return None, None, 0
    if not source.startswith(PREFIX) or len(source) == len(PREFIX):
        raise refusal(404, "no such source stream")
    return source[len(PREFIX) :], offset, int(sub_offset or 0)


async def head(request: web.Request) -> web.Response:
    authorize(request, write=False)
    try:
        snapshot = await request.app[STORE].head(name_of(request))
    except StreamGone:
        return web.Response(status=410)
    if snapshot is None:
        return web.Response(status=404)
    headers = tail_headers(snapshot)
    headers["Cache-Control"] = "no-store"
    if snapshot.config.ttl is not None:
        headers["Stream-TTL"] = str(snapshot.config.ttl)
    if snapshot.config.expires_at is not None:
        headers["Stream-Expires-At"] = snapshot.config.expires_at
    headers["ETag"] = etag(name_of(request), offsets.START, snapshot.tail, snapshot.closed)
    return web.Response(status=200, headers=headers)


async def delete(request: web.Request) -> web.Response:
    authorize(request, write=True)
    try:
        deleted = await request.app[STORE].delete(name_of(request))
    except StreamGone:
        raise refusal(410, "the stream is gone") from None
    if not deleted:
        raise refusal(404, "no such stream")
    return web.Response(status=204)


def etag(name: str, start: str, end: str, closed: bool) -> str:
    tag = base64.b64encode(name.encode()).decode()
    return f'"{tag}:{start}:{end}{":c" if closed else ""}"'


def _producer(request: web.Request) -> Producer | None:
    values = [request.headers.get(h) for h in ("Producer-Id", "Producer-Epoch", "Producer-Seq")]
    if all(v is None for v in values):
        return None
    producer_id, epoch, seq = values
    if producer_id is None or epoch is None or seq is None:
        raise refusal(400, "Producer-Id, Producer-Epoch and Producer-Seq go together")
    if not producer_id or len(producer_id) > _MAX_TOKEN_TEXT or not text_ok(producer_id):
        raise refusal(400, "Producer-Id must be printable UTF-8 text of 1-256 characters")
    numbers = []
    for name, value in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if not _STRICT.fullmatch(value) or int(value) > _SAFE_INTEGER:
            raise refusal(400, f"{name} must be a non-negative integer")
        numbers.append(int(value))
    return Producer(producer_id, numbers[0], numbers[1])


async def append(request: web.Request) -> web.Response:
    authorize(request, write=True)
    producer = _producer(request)
    close = request.headers.get("Stream-Closed") == "true"
    body = await read_body_within(request, request.app[HUB].settings.max_body_bytes, BODY_TIMEOUT)
    if not body and not close:
        raise refusal(400, "an append needs a body")
    content_type = request.headers.get("Content-Type")
    if body and not content_type:
        raise refusal(400, "an append needs a Content-Type")
    seq = request.headers.get("Stream-Seq")
    if seq is not None and (len(seq) > _MAX_TOKEN_TEXT or not text_ok(seq)):
        raise refusal(400, "Stream-Seq must be printable UTF-8 text of 256 characters at most")
    if content_type is not None and not text_ok(content_type):
        raise refusal(400, "the Content-Type is not text")
    try:
        result = await request.app[STORE].append(
            name_of(request),
            body,
            content_type or "",
            seq,
            producer,
            close,
        )
    except tuple(_APPEND_REFUSALS) as exc:
        raise _refusal(exc, _APPEND_REFUSALS) from None
    return _appended(result, producer, close_only=not body)


# What a store's refusal is answered with: status and detail (None: the error's own).
Refusals = dict[type[Exception], tuple[int, str | None]]
_CREATE_REFUSALS: Refusals = {
    ConfigConflict: (409, "the stream exists with another configuration"),
    StreamGone: (409, "the stream (or the source) is gone; forks still read it"),
    SourceNotFound: (404, "no such source stream"),
    ContentTypeMismatch: (409, "the Content-Type is not the source's"),
    InvalidForkOffset: (400, "the fork offset is past the source's data"),
    ForkTooDeep: (400, f"forks read through {MAX_FORK_DEPTH} sources at most"),
    InvalidJson: (400, None),
    EmptyArray: (400, None),
}
_APPEND_REFUSALS: Refusals = {
    StreamNotFound: (404, "no such stream"),
    StreamGone: (410, "the stream is gone"),
    ContentTypeMismatch: (409, "the Content-Type is not the stream's"),
    SeqConflict: (409, "Stream-Seq must grow"),
    InvalidJson: (400, None),
    EmptyArray: (400, None),
}


def _refusal(exc: Exception, refusals: Refusals) -> DurableError:
    status, detail = refusals[type(exc)]
    return refusal(status, detail or str(exc))


def _appended(result: Appended, producer: Producer | None, close_only: bool) -> web.Response:
    headers: dict[str, str] = {"Stream-Next-Offset": result.tail}
    if result.closed:
        headers["Stream-Closed"] = "true"
    verdict = result.producer
    if result.refused_closed:
        if close_only and producer is None:
            return web.Response(status=204, headers=headers)  # closing again: done already
        raise refusal(409, "the stream is closed", headers)
    if producer is not None:
        headers["Producer-Epoch"] = str(producer.epoch)
        headers["Producer-Seq"] = str(producer.seq)
    if verdict is None or verdict.verdict is Verdict.ACCEPTED:
        status = 200 if producer is not None and not close_only else 204
        return web.Response(status=status, headers=headers)
    return _refused(verdict, headers)


def _refused(verdict: ProducerResult, headers: dict[str, str]) -> web.Response:
    """A producer request not appended: a duplicate (done already), or refused."""
    kind = verdict.verdict
    if kind is Verdict.DUPLICATE:
        headers["Producer-Seq"] = str(verdict.last_seq)
        return web.Response(status=204, headers=headers)
    if kind is Verdict.STALE_EPOCH:
        epoch = {"Producer-Epoch": str(verdict.current_epoch)}
        raise refusal(403, "a newer producer epoch exists", epoch)
    if kind is Verdict.INVALID_EPOCH_SEQ:
        raise refusal(400, "a new epoch starts at Producer-Seq 0")
    gap = {
        "Producer-Expected-Seq": str(verdict.expected_seq),
        "Producer-Received-Seq": str(verdict.received_seq),
    }
    raise refusal(409, "a producer sequence gap", gap)
