"""The process's one Redis pub/sub connection: reference-counted SUBSCRIBE, and resync on reconnect.

Every (re)connect re-subscribes all channels and ends with a PING whose reply
marks the new connection live; the sink is then told to resync, so every local
subscriber re-reads history from its last sent entry. A reconnect can never
silently lose entries. Subscribing also ends with a PING: its reply proves the
SUBSCRIBE is in effect, after which history can be read without a gap.
Messages are handled as hiredis parses them, in the socket's read callback:
no await and no task switch per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import ResponseError

from hub.broker.base import Entry, LiveSink
from hub.broker.commands import Link, Resolver, connect, encode, fixed, parse_url
from hub.broker.keys import Keys
from hub.broker.ledger import Ledger
from hub.tasks import stop

log = logging.getLogger(__name__)

FlushRequest = Callable[[list[str], list[str], int], bytes]
_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
_CONNECT_TIMEOUT = 5.0


class LiveConnection:
    """The pub/sub link to one node. `sharded`: SSUBSCRIBE (a Cluster's node), one command
    per channel since each names channels of one slot only; a channel the node stops
    serving (its slot moved) is pushed as `sunsubscribe` and handed to `on_moved`."""

    def __init__(
        self,
        source: str | Resolver,
        keys: Keys,
        sink: LiveSink,
        health_interval: float = 5.0,
        on_reconnect: Callable[[], None] | None = None,
        *,
        sharded: bool = False,
        primary: bool = False,
        on_moved: Callable[[str | None], None] | None = None,
    ) -> None:
        self._resolve = fixed(parse_url(source)) if isinstance(source, str) else source
        self._primary = primary
        self._sharded = sharded
        verbs = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        self._flush_request = _request(verbs, keys, sharded)
        self._on_moved = on_moved
        self.address: tuple[str, int] | None = None  # of the node connected last
        self._keys = keys
        self._sink = sink
        self._health_interval = health_interval
        self._on_reconnect = on_reconnect
        self.ledger = Ledger()
        self._link: Link | None = None  # attached: subscribed and read
        self.alive = False
        self._live_since: float | None = None  # when the current link answered its first PING
        self._connected_once = False
        self._last_pong = 0.0
        self._kick = asyncio.Event()
        self._retry = asyncio.Event()  # ends the wait before the next connection attempt
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="hub-live-reader"),
            asyncio.create_task(self._flush_loop(), name="hub-live-writer"),
            asyncio.create_task(self._health_loop(), name="hub-live-health"),
        ]

    async def close(self) -> None:
        self._closing = True
        self._kick.set()
        for task in self._tasks:
            await stop(task)
        self.ledger.cancel_waiters()

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ledger.subscribe(channel, future):
            self._kick.set()
        return future

    def kick(self) -> None:
        """Flush what the ledger says changed (after `ledger.move_out` / `move_in`)."""
        self._kick.set()

    def drop_link(self) -> None:
        """Closes the connection; the link connects again to the node resolved anew."""
        if self._link is not None:
            self._link.close()

    def retry_now(self) -> None:
        """Connect again at once, not after the backoff: the node to use has changed (a
        Sentinel named a new primary), so the next attempt is likely to succeed."""
        self._retry.set()

    def unsubscribe(self, channel: str) -> None:
        if self.ledger.unsubscribe(channel):
            self._kick.set()

    async def _read_loop(self) -> None:
        """Connect, and reconnect whenever the link is lost; replies are handled as parsed.

        The delay before the next attempt doubles (up to 2 s) until a link stays live
        for 2 s: a Redis that keeps accepting and dropping connections is not hammered.
        """
        loop = asyncio.get_running_loop()
        backoff = _MIN_BACKOFF
        while not self._closing:
            self._retry.clear()
            try:
                options = await self._resolve()
                link = await connect(options, _CONNECT_TIMEOUT, primary=self._primary)
                self.address = (options.get("host", ""), options.get("port", 0))
            except Exception as exc:  # refused, unreachable, timed out, a bad host name...
                log.warning("pub/sub connection to Redis failed: %s", exc)
            else:
                if self._closing:  # closed while connecting: this link must not serve
                    link.close()
                    break
                link.listen(self._handle)
                self._attach(link)
                try:
                    await link.ended
                    log.warning("pub/sub connection to Redis lost")
                finally:
                    self._detach()
                    link.close()
                # Only a link that stayed live a while starts the delays afresh: one dropped
                # right after going live (Redis cutting a slow subscriber, say) would
                # otherwise make every stream resync many times a second.
                live_since = self._live_since
                if live_since is not None and loop.time() - live_since >= _MAX_BACKOFF:
                    backoff = _MIN_BACKOFF
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._retry.wait()
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _attach(self, link: Link) -> None:
        """A new connection: everything must be subscribed again, then resynced."""
        self._link = link
        self.ledger.connected()
        self._live_since = None
        self._last_pong = asyncio.get_running_loop().time()
        if self._connected_once and self._on_reconnect is not None:
            self._on_reconnect()
        self._connected_once = True
        self._kick.set()

    def _detach(self) -> None:
        self._link = None
        self.alive = False
        self.ledger.confirmed = set()

    def _handle(self, reply: object) -> None:
        if isinstance(reply, ResponseError):
            # A refused SUBSCRIBE (an ACL, say; MOVED in a Cluster) must not leave channels
            # silently unserved.
            log.warning("Redis refused a pub/sub command: %s; reconnecting", reply)
            if self._on_moved is not None:
                self._on_moved(None)
            if self._link is not None:
                self._link.close()
            return
        if isinstance(reply, bytes) and reply.isdigit():
            self._pong(int(reply))  # PING outside subscribed mode answers with a plain string
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message" or kind == b"smessage":
            self._deliver(reply[1], reply[2])
        elif kind == b"pong" and reply[1].isdigit():
            self._pong(int(reply[1]))
        elif kind == b"sunsubscribe":  # a channel still wanted here? Its slot moved
            channel = self._keys.channel_of(reply[1])
            if self.ledger.dropped_by_server(channel) and self._on_moved is not None:
                self._on_moved(channel)

    def _deliver(self, live: bytes, payload: bytes) -> None:
        try:
            epoch, offset, stamp, event, data = payload.split(b"\n", 4)
            entry = Entry.create(int(offset), event.decode(), data.decode(), int(stamp))
            channel, number = self._keys.channel_of(live), int(epoch)
        except ValueError:  # UnicodeDecodeError included: not a hub message
            log.warning("dropped a malformed message on %r", live)
            return
        self._sink.deliver(channel, number, entry)

    def _pong(self, token: int) -> None:
        self._last_pong = asyncio.get_running_loop().time()
        if self.ledger.pong(token):
            self.alive = True
            self._live_since = self._last_pong
            # One link of several (a Cluster) serves only its own channels.
            self._sink.resync(tuple(self.ledger.refs) if self._sharded else None)

    async def _flush_loop(self) -> None:
        """The only writer: sends what changed since the last flush, then a PING."""
        while not self._closing:
            await self._kick.wait()
            self._kick.clear()
            link = self._link
            if self._closing or link is None or link.lost:
                continue
            # One write; a link lost meanwhile drops it, and the reconnect subscribes everything.
            link.write(self._flush_request(*self.ledger.next_flush()))

    async def _health_loop(self) -> None:
        """PING regularly; a connection that stops answering is dropped and reconnected."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self._health_interval)
            link = self._link
            if link is None:
                continue
            if loop.time() - self._last_pong > 3 * self._health_interval:
                log.warning("pub/sub connection to Redis stopped answering; reconnecting")
                self.alive = False
                link.close()
                continue
            self._kick.set()


def _chunks(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


def _request(verbs: tuple[str, str], keys: Keys, sharded: bool) -> FlushRequest:
    """What a flush sends: (S)SUBSCRIBE and (S)UNSUBSCRIBE commands, then PING `token`.
    A sharded command names channels of one slot only, hence one channel per command."""
    size = 1 if sharded else 500
    subscribe, unsubscribe = verbs

    def request(add: list[str], drop: list[str], token: int) -> bytes:
        commands = [(subscribe, *map(keys.live, c)) for c in _chunks(add, size)]
        commands += [(unsubscribe, *map(keys.live, c)) for c in _chunks(drop, size)]
        commands.append(("PING", str(token)))
        return b"".join(encode(command) for command in commands)

    return request
