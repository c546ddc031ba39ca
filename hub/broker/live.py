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

log = logging.getLogger(__name__)

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
        self._verbs = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        self._on_moved = on_moved
        self.address: tuple[str, int] | None = None  # of the node connected last
        self._keys = keys
        self._sink = sink
        self._health_interval = health_interval
        self._on_reconnect = on_reconnect
        self._refs: dict[str, int] = {}
        self._on_server: set[str] = set()
        # Channels gained or lost since the last flush: a flush costs what changed, not all.
        self._dirty: set[str] = set()
        self._confirmed: set[str] = set()
        # Token of the flush that last sent a channel's SUBSCRIBE: a PING reply confirms
        # only channels subscribed at or before it.
        self._subscribed_at: dict[str, int] = {}
        # Futures waiting for a PING reply: token -> [(channel, future)]; token 0 = next flush.
        self._waiting: dict[int, list[tuple[str, asyncio.Future[None]]]] = {}
        self._unsent: list[tuple[str, asyncio.Future[None]]] = []
        self._token = 0
        self._live_token = -1
        self._link: Link | None = None  # attached: subscribed and read
        self._alive = False
        self._live_since: float | None = None  # when the current link answered its first PING
        self._connected_once = False
        self._last_pong = 0.0
        self._kick = asyncio.Event()
        self._retry = asyncio.Event()  # ends the wait before the next connection attempt
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def alive(self) -> bool:
        return self._alive

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
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiters in [*self._waiting.values(), self._unsent]:
            for _, future in waiters:
                future.cancel()

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        count = self._refs.get(channel, 0) + 1
        self._refs[channel] = count
        if count == 1:
            self._dirty.add(channel)
        if channel in self._confirmed:
            future.set_result(None)
        else:
            self._unsent.append((channel, future))
            self._kick.set()
        return future

    def holds(self, channel: str) -> bool:
        """Whether `channel` is subscribed (or being subscribed) through this link."""
        return channel in self._refs

    def move_out(self, channel: str) -> tuple[int, list[asyncio.Future[None]]]:
        """Forgets `channel` (another node serves it now): its reference count and the
        subscribers still waiting for it, for the link that takes it over."""
        count = self._refs.pop(channel, 0)
        self._dirty.add(channel)
        self._confirmed.discard(channel)
        waiters: list[asyncio.Future[None]] = []
        for queue in [self._unsent, *self._waiting.values()]:
            waiters += [future for name, future in queue if name == channel]
            queue[:] = [(name, future) for name, future in queue if name != channel]
        self._kick.set()
        return count, waiters

    def move_in(self, channel: str, count: int, waiters: list[asyncio.Future[None]]) -> None:
        """Takes over a channel from another link, with its subscribers."""
        if count <= 0:
            return
        self._refs[channel] = self._refs.get(channel, 0) + count
        self._dirty.add(channel)
        self._confirmed.discard(channel)
        self._unsent += [(channel, future) for future in waiters]
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
        count = self._refs.get(channel, 0) - 1
        if count > 0:
            self._refs[channel] = count
            return
        self._refs.pop(channel, None)
        self._dirty.add(channel)
        self._confirmed.discard(channel)
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
        self._on_server = set()
        self._subscribed_at = {}  # nothing is subscribed on a new connection
        self._dirty = set(self._refs)
        self._confirmed = set()
        for waiters in self._waiting.values():
            self._unsent.extend(waiters)
        self._waiting.clear()
        self._live_token = 0  # the next flush's PING marks the connection live
        self._live_since = None
        self._last_pong = asyncio.get_running_loop().time()
        if self._connected_once and self._on_reconnect is not None:
            self._on_reconnect()
        self._connected_once = True
        self._kick.set()

    def _detach(self) -> None:
        self._link = None
        self._alive = False
        self._confirmed = set()

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
        elif kind == b"sunsubscribe":
            self._unsubscribed(self._keys.channel_of(reply[1]))

    def _unsubscribed(self, channel: str) -> None:
        """A channel still wanted here was unsubscribed by the server: its slot moved."""
        if channel not in self._refs or channel not in self._on_server:
            return  # the answer to our own SUNSUBSCRIBE
        self._on_server.discard(channel)
        self._confirmed.discard(channel)
        self._subscribed_at.pop(channel, None)
        if self._on_moved is not None:
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
        for waited in [t for t in self._waiting if t <= token]:
            for channel, future in self._waiting.pop(waited):
                if channel in self._on_server and self._subscribed_at.get(channel, 0) <= token:
                    self._confirmed.add(channel)
                if not future.done():
                    future.set_result(None)
        if token == self._live_token:
            self._alive = True
            self._live_since = self._last_pong
            # One link of several (a Cluster) serves only its own channels.
            self._sink.resync(tuple(self._refs) if self._sharded else None)

    async def _flush_loop(self) -> None:
        """The only writer: sends what changed since the last flush, then a PING."""
        while not self._closing:
            await self._kick.wait()
            self._kick.clear()
            link = self._link
            if self._closing or link is None or link.lost:
                continue
            dirty, self._dirty = self._dirty, set()
            add = sorted(c for c in dirty if c in self._refs and c not in self._on_server)
            drop = sorted(c for c in dirty if c not in self._refs and c in self._on_server)
            self._on_server.update(add)
            self._on_server.difference_update(drop)
            self._token += 1
            token = self._token
            for channel in add:
                self._subscribed_at[channel] = token
            for channel in drop:
                self._subscribed_at.pop(channel, None)
            self._waiting[token] = self._unsent
            self._unsent = []
            if self._live_token == 0:
                self._live_token = token
            size = 1 if self._sharded else 500
            subscribe, unsubscribe = self._verbs
            commands = [(subscribe, *map(self._keys.live, c)) for c in _chunks(add, size)]
            commands += [(unsubscribe, *map(self._keys.live, c)) for c in _chunks(drop, size)]
            commands.append(("PING", str(token)))
            # One write; a link lost meanwhile drops it, and the reconnect subscribes everything.
            link.write(b"".join(encode(command) for command in commands))

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
                self._alive = False
                link.close()
                continue
            self._kick.set()


def _chunks(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]
