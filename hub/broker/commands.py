"""Connections to Redis of the hub's own: one for commands, pipelined, and the pub/sub link.

Every call is written at once (calls made in the same turn of the event loop
go out in one write) and replies are matched to calls in order: no pool, no
lock and no timer per call. One watchdog per connection drops the connection
when the oldest call has had no answer for the timeout, failing every call
in flight (after a lost reply, later replies could no longer be matched).
A lost connection fails its calls; the next call connects again. A link that
`listen`s hands every reply to one callback as it is parsed (pub/sub pushes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.exceptions import ResponseError

from hub.redisurl import redis_options

log = logging.getLogger(__name__)

Arg = str | bytes | int
# As redis-py's defaults: probes after 30 s idle, every 5 s, gone after 3 unanswered.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


class Script:
    """A Lua script, run by its SHA1 (EVALSHA) and sent in full only when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def encode(args: Sequence[Arg]) -> bytes:
    """A command in RESP: an array of bulk strings (hiredis's C encoder, ~3x Python's)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: a 1-tuple
    return packed


def parse_url(url: str) -> dict[str, Any]:
    """host/port or path, username, password and db of a redis://, rediss:// or unix:// URL
    (`tls` for rediss://, with its `ssl_*` query options); ValueError if it is malformed.
    Settings validate HUB_REDIS_URL with the same function, so a hub never starts with one."""
    return redis_options(url)


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """rediss:// as redis-py reads its query: a CA file, a client certificate, and
    `ssl_cert_reqs=none` (or `optional`) to relax verification."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if "ssl_certfile" in options:
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    reqs = options.get("ssl_cert_reqs", "required").lower()
    if reqs in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE if reqs == "none" else ssl.CERT_OPTIONAL
    return context


class Link(asyncio.Protocol):
    """One TCP (or Unix socket) connection: writes commands, matches replies in order."""

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._listener: Callable[[Any], None] | None = None
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False
        self.lost = False
        self.ended: asyncio.Future[None] = self._loop.create_future()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.lost:
            raise ConnectionError("the connection to Redis was lost")
        future = self._loop.create_future()
        self._waiting.append((future, self._loop.time() + self._timeout))
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout, self._watch)
        return future

    def listen(self, handler: Callable[[Any], None]) -> None:
        """From now on every reply goes to `handler` (subscribed mode: replies are pushes)."""
        self._listener = handler

    def write(self, command: bytes) -> None:
        """Sends without awaiting a reply (what `listen` is for)."""
        if self._transport is not None and not self.lost:
            self._transport.write(command)

    def _flush(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _watch(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self._timed_out = True
            self.close()
        else:
            self._watchdog = self._loop.call_at(deadline, self._watch)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            # A Redis gone without a word (a host or network lost) is noticed by the kernel too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in _KEEPALIVE.items():
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        # A local, not an attribute holding a bound method: the link stays free of cycles.
        on_reply = self._match if self._listener is None else self._listener
        try:
            while not self.lost and (reply := self._reader.gets()) is not False:
                on_reply(reply)
        except hiredis.ProtocolError:  # not Redis speaking
            self.close()
        except Exception:
            # A failing listener must not take the event loop's reader down: drop the link
            # (its owner reconnects), as for any other surprise on it.
            log.exception("handling a reply from Redis failed; dropping the connection")
            self.close()

    def _match(self, reply: Any) -> None:
        if not self._waiting:  # a reply to nothing: the stream cannot be trusted any more
            self.close()
            return
        future, _ = self._waiting.popleft()
        if future.done():
            return
        if isinstance(reply, ResponseError):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        failure: type[OSError] = TimeoutError if self._timed_out else ConnectionError
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(failure("no answer from Redis (connection lost)"))
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails what is in flight


# Where a connection goes: options as `parse_url` makes them, found anew for every
# connection (Sentinel: the current primary).
Resolver = Callable[[], Awaitable[dict[str, Any]]]


class Commands:
    """The hub's command connection to one Redis: a URL, fixed options, or a resolver that
    names the node anew before each connection (the primary a Sentinel set-up elects)."""

    def __init__(
        self,
        source: str | dict[str, Any] | Resolver,
        timeout: float = 5.0,
        *,
        primary: bool = False,
    ) -> None:
        if isinstance(source, str):
            source = parse_url(source)
        self._resolve: Resolver = fixed(source) if isinstance(source, dict) else source
        self._timeout = timeout
        # Check that the node is a primary on connecting: a resolver may name a demoted one.
        self._primary = primary
        self._link: Link | None = None
        self._connecting: asyncio.Task[Link] | None = None
        self.address: tuple[str, int] | None = None

    async def call(self, *args: Arg) -> Any:
        return await (await self._ready()).send(encode(args))

    async def _ready(self) -> Link:
        link = self._link
        if link is None or link.lost:
            link = await self._connect()
        return link

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        asking: bool = False,
        wait: tuple[int, float] | None = None,
    ) -> Any:
        """EVALSHA (EVAL when Redis lacks the script). `asking`: ASKING first, on the same
        connection (a slot being migrated to this node). `wait=(replicas, seconds)`: WAIT
        right after it on the same connection; raises ReplicasTimeout when fewer confirm."""
        try:
            return await self._run("EVALSHA", script.sha, keys, args, asking, wait)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._run("EVAL", script.source, keys, args, asking, wait)

    async def _run(
        self,
        verb: str,
        body: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        asking: bool,
        wait: tuple[int, float] | None,
    ) -> Any:
        link = await self._ready()
        # Sent in one turn of the loop, so in one write, in this order, on one connection.
        asked = link.send(encode(["ASKING"])) if asking else None
        reply = link.send(encode([verb, body, len(keys), *keys, *args]))
        waited = link.send(encode(["WAIT", wait[0], int(wait[1] * 1000)])) if wait else None
        for side in (asked, waited):  # failing with the call: no "never retrieved" warning
            if side is not None:
                side.add_done_callback(_retrieve)
        if asked is not None:
            await asked
        result = await reply
        if waited is not None and wait is not None:
            confirmed = await waited
            if confirmed < wait[0]:
                raise ReplicasTimeout(f"{confirmed} of {wait[0]} replicas confirmed in time")
        return result

    def drop(self) -> None:
        """Closes the connection: the next call connects anew (to a node resolved again)."""
        if self._link is not None:
            self._link.close()

    async def _connect(self) -> Link:
        # Concurrent calls share one attempt; a failed attempt is not reused.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and task is not None and not task.cancelling():
                # `close` ended the attempt, not our caller: a failure to connect, which
                # callers answer (503, retry), where a stray cancellation would end a
                # publish with no answer at all.
                raise ConnectionError("the connection was closed while connecting") from None
            raise

    async def _open(self) -> Link:
        options = await self._resolve()
        self._link = await connect(options, self._timeout, primary=self._primary)
        self.address = (options.get("host", ""), options.get("port", 0))
        return self._link

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._link is not None:
            self._link.close()
            self._link = None


class ReplicasTimeout(OSError):
    """WAIT counted fewer replicas than asked for: the write may not survive a failover."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def fixed(options: dict[str, Any]) -> Resolver:
    async def resolve() -> dict[str, Any]:
        return options

    return resolve


async def connect(options: dict[str, Any], timeout: float, *, primary: bool = False) -> Link:
    """A link to the Redis `options` name (see `parse_url`), authenticated, its database
    selected, and answering; ConnectionError when Redis refuses the password, the database
    or the PING, or (`primary`) when the node is not a primary."""
    loop = asyncio.get_running_loop()
    link = Link(timeout)
    async with asyncio.timeout(timeout):
        if "path" in options:
            await loop.create_unix_connection(lambda: link, options["path"])
        else:
            await loop.create_connection(
                lambda: link,
                options["host"],
                options["port"],
                ssl=_tls_context(options) if options.get("tls") else None,
            )
        try:
            if options.get("password") or options.get("username"):
                user = [options["username"]] if options.get("username") else []
                await link.send(encode(["AUTH", *user, options.get("password", "")]))
            if options.get("db"):
                await link.send(encode(["SELECT", options["db"]]))
            # One round trip at least: a server (or proxy) that accepts and then closes,
            # or answers an error (max clients), fails here rather than counting as up.
            # A Redis still loading its data is up: its commands say LOADING (a 503).
            try:
                await link.send(encode(["PING"]))
            except ResponseError as exc:
                if not str(exc).startswith("LOADING"):
                    raise
            if primary:
                role = await link.send(encode(["ROLE"]))
                if not role or role[0] != b"master":
                    raise ConnectionError("the node named as primary is not a primary (yet)")
        except ResponseError as exc:
            link.close()  # a wrong password or database: Redis is not usable, as if down
            raise ConnectionError(f"Redis refused the connection: {exc}") from exc
        except BaseException:
            link.close()
            raise
    return link
