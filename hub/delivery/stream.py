"""An open event stream: subscribe, take its positions, backfill, then stream live.

The bytes go through a `Sink`: aiohttp's streaming response, or the lean
front's own connection (`hub.http.sink`); the stream's logic is the same for both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from hub import sse
from hub.config import Settings
from hub.delivery.admission import Opening
from hub.delivery.engine import Engine
from hub.delivery.reasons import Close
from hub.delivery.subscription import WRITE_BUDGET, Subscription
from hub.errors import BrokerUnavailable, HubError

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY = 2.0
_MIN_SEND_TIMEOUT = 30.0
# How long an opening stream waits for its live subscription before answering anyway.
_SUBSCRIBE_WAIT = 1.0


class ClientGone(Exception):
    """The client stopped reading or went away."""


class Sink(Protocol):
    """Where a stream's bytes go. `write` raises ClientGone when the client is gone or
    takes nothing for the send timeout; `direct` writes now or refuses (False)."""

    async def start(self) -> None: ...

    async def write(self, data: bytes) -> None: ...

    def direct(self, data: bytes) -> bool: ...

    def abort(self) -> None: ...

    async def finish(self) -> None: ...


def send_timeout(settings: Settings) -> float:
    """A client that takes nothing for this long is gone (TCP_USER_TIMEOUT is set to it too)."""
    return max(_MIN_SEND_TIMEOUT, settings.heartbeat_interval * 2)


def chunk(data: bytes) -> bytes:
    """HTTP/1.1 chunked framing of one frame (never empty: that would end the response)."""
    assert data, "an empty chunk would end the response"
    return b"%x\r\n%b\r\n" % (len(data), data)


def room_now(transport: asyncio.Transport) -> bool:
    """Whether a frame may go to the socket at once: open, and under WRITE_BUDGET unsent
    bytes (beyond it the stream's task takes over, so memory stays bounded)."""
    return not transport.is_closing() and transport.get_write_buffer_size() < WRITE_BUDGET


async def timed_write(write: Awaitable[None], timeout: float, abort: Callable[[], None]) -> None:
    try:
        async with asyncio.timeout(timeout):
            await write
    except TimeoutError:
        abort()
        raise ClientGone from None


async def open_stream(
    hub: Engine, opening: Opening, sink: Sink, sub: Subscription | None = None
) -> None:
    """Runs one admitted stream until it ends; errors after the headers only end it.
    `sub`: a subscription of another kind (a protocol front-end's), else the hub's own."""
    settings = hub.settings
    if sub is None:
        sub = Subscription(
            opening.channels, settings.stream_queue_size, hub.metrics, settings.stream_queue_bytes
        )
    sub.start_from(opening.last_event_id)
    # Subscribed first: live entries are held by the subscription until it is settled.
    async with hub.fanout.registered(sub) as subscribed:
        await _settle(hub, sub, subscribed)
        await sink.start()
        await _serve(hub, opening, sub, sink, subscribed)
    await sink.finish()


async def _serve(
    hub: Engine, opening: Opening, sub: Subscription, sink: Sink, subscribed: asyncio.Future[Any]
) -> None:
    """The stream once its response has started: opened, run, and closed."""
    settings = hub.settings
    loop = asyncio.get_running_loop()
    sub.abort = sink.abort
    sub.attach(sink.direct, loop.time)
    user = opening.subscriber.user
    if opening.subscriber.expires_at is not None:  # on the loop's clock, which the fan-out ticks
        sub.deadline = loop.time() + (opening.subscriber.expires_at - time.time())
    hub.metrics.open_streams.inc()
    opened = time.monotonic()
    # DEBUG: the access log has the open already, and a reconnect storm of thousands would
    # spend a fifth of its accept CPU here; "stream closed" carries the whole story.
    log.debug("stream opened", extra={"user": user, "channels": list(sub.channels)})
    if hub.draining:
        sub.close(Close.SHUTDOWN)  # the drain began while this stream was being set up
    try:
        await sink.write(sub.opening(settings.retry_ms))
        await _run(hub, sub, sink, subscribed)
        while sub.has_output:  # ended by a drain or an expired token: accepted frames still go
            await sink.write(sub.take())
    except ClientGone:
        pass
    except Exception:
        # The headers are sent: no error answer is possible any more. End the stream;
        # the client reconnects and resumes from its last id.
        log.exception("stream failed", extra={"user": user})
    finally:
        hub.metrics.open_streams.dec()
        log.info(
            "stream closed",
            extra={
                "user": user,
                "channels": list(sub.channels),
                "duration_s": round(time.monotonic() - opened, 3),
                "events": sub.sent,
                "reason": sub.closed or "client",
            },
        )


async def _settle(hub: Engine, sub: Subscription, subscribed: asyncio.Future[Any]) -> None:
    """Fix "from now" before the response starts, so that open means subscribed.

    Positions taken once the live channels are subscribed need no backfill:
    whatever is published after them arrives live. Without a subscription in
    time (the broker is down or slow), the first backfill catches up instead.
    """
    settle = sub.from_now
    if settle and not subscribed.done():
        settle = await hub.fanout.wait_subscribed(subscribed, _SUBSCRIBE_WAIT)
    resyncs = sub.resyncs
    await sub.take_positions(hub.broker)  # reads only the positions the client did not give
    if settle:
        sub.settle(resyncs)


async def _run(hub: Engine, sub: Subscription, sink: Sink, subscribed: asyncio.Future[Any]) -> None:
    """The stream's task: backfills, queued frames and heartbeats the fan-out could not write.

    While nothing is queued the task is parked without a timer; the fan-out's tick
    wakes it for a heartbeat or ends the stream when its token expires.
    """
    settings = hub.settings
    loop = asyncio.get_running_loop()
    heartbeat = settings.heartbeat_interval
    retry_at = 0.0
    failures = 0

    async def send(data: bytes) -> None:
        await sink.write(data)
        sub.last_write = loop.time()

    while sub.closed is None:
        if sub.has_output:
            await send(sub.take())
            continue
        if sub.needs_sync and loop.time() >= retry_at:
            try:
                # History is read only once the live channels are subscribed: no gap between.
                async with asyncio.timeout(heartbeat):
                    await asyncio.shield(subscribed)
                await sub.sync(hub.broker, send, settings.history_page_size)
                failures = 0
            except (HubError, TimeoutError) as exc:
                # Unreachable, or refused: keep the stream (and its heartbeats), try again.
                if not isinstance(exc, BrokerUnavailable | TimeoutError):
                    log.warning("backfill refused: %s", exc)
                failures += 1
                retry_at = loop.time() + min(0.05 * 2**failures, _MAX_RETRY_DELAY)
            continue
        if sub.heartbeat_due(heartbeat):
            await send(sse.PING)
            continue
        await sub.wait(retry_at - loop.time() if sub.needs_sync else None)
