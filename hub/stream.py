"""`GET /events`: authenticate, subscribe, backfill from the client's cursor, then stream live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from hub import sse
from hub.auth import Subscriber
from hub.channels import allowed, topic_channel, user_channel, valid_name
from hub.errors import BadRequest, BrokerUnavailable, Forbidden, HubError, TooManyStreams
from hub.state import HUB, Hub
from hub.subscription import WRITE_BUDGET, DirectWriter, Subscription
from hub.tokens import subscriber_token

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY = 2.0
_MIN_SEND_TIMEOUT = 30.0


class _ClientGone(Exception):
    """The client stopped reading or went away."""


class _Response(EventSourceResponse):
    async def _ping(self) -> None:
        """No ping task per stream: the stream loop sends heartbeats when it has been idle."""


def _channels(request: web.Request, hub: Hub, subscriber: Subscriber) -> tuple[str, ...]:
    topics = list(dict.fromkeys(request.query.getall("topic", [])))
    if len(topics) > hub.settings.max_topics_per_stream:
        raise BadRequest(f"too many topics ({len(topics)} > {hub.settings.max_topics_per_stream})")
    for topic in topics:
        if not valid_name(topic):
            raise BadRequest(f"topic {topic!r} does not match [A-Za-z0-9_.@:-]{{1,128}}")
        if not allowed(topic, subscriber.topic_grants):
            raise Forbidden(f"the token does not allow topic {topic!r}")
    return (user_channel(subscriber.user), *(topic_channel(t) for t in topics))


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    settings = hub.settings
    if hub.draining:
        raise BrokerUnavailable("the hub is shutting down")
    if len(request.query_string) > settings.max_query_length:
        raise BadRequest(f"the query string is over {settings.max_query_length} characters")
    subscriber = hub.subscriber_tokens.subscriber(subscriber_token(request, settings))
    channels = _channels(request, hub, subscriber)
    # The slot is taken before the first await, so concurrent opens cannot pass the limit.
    if not hub.fanout.reserve(channels[0], settings.max_streams_per_user):
        raise TooManyStreams(
            f"user {subscriber.user!r} already has {settings.max_streams_per_user} open streams"
        )
    try:
        return await _stream(request, hub, subscriber, channels)
    finally:
        hub.fanout.release(channels[0])


async def _stream(
    request: web.Request, hub: Hub, subscriber: Subscriber, channels: tuple[str, ...]
) -> web.StreamResponse:
    settings = hub.settings
    sub = Subscription(
        channels, settings.stream_queue_size, hub.metrics, settings.stream_queue_bytes
    )
    # The header wins: EventSource reconnects with its original URL *and* the newer header.
    sub.start_from(request.headers.get("Last-Event-ID") or request.query.get("lastEventId"))
    await sub.take_positions(hub.broker)

    # A client that takes nothing for this long is gone (TCP_USER_TIMEOUT is set to it too).
    send_timeout = max(_MIN_SEND_TIMEOUT, settings.heartbeat_interval * 2)
    response = _Response(send_timeout=send_timeout, sep="\n")
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    transport = request.transport
    sub.abort = transport.abort if transport is not None else None
    if transport is not None:
        sub.attach(_direct_writer(transport, response.chunked), loop.time)
    if subscriber.expires_at is not None:  # on the loop's clock, which the fan-out ticks by
        sub.deadline = loop.time() + (subscriber.expires_at - time.time())
    subscribed = hub.fanout.add(sub)
    hub.metrics.open_streams.inc()
    opened = time.monotonic()
    log.info("stream opened", extra={"user": subscriber.user, "channels": list(channels)})
    if hub.draining:
        sub.close("shutdown")  # the drain began while this stream was being set up
    try:
        await _write(response, sse.opening(settings.retry_ms, sub.initial_id()), send_timeout)
        await _run(hub, sub, response, subscribed, send_timeout)
        while sub.has_output:  # ended by a drain or an expired token: accepted frames still go
            await _write(response, sub.take(), send_timeout)
    except _ClientGone:
        pass
    except Exception:
        # The headers are sent: no error answer is possible any more. End the stream;
        # the client reconnects and resumes from its last id.
        log.exception("stream failed", extra={"user": subscriber.user})
    finally:
        hub.fanout.remove(sub)
        hub.metrics.open_streams.dec()
        log.info(
            "stream closed",
            extra={
                "user": subscriber.user,
                "duration_s": round(time.monotonic() - opened, 3),
                "events": sub.sent,
                "reason": sub.closed or "client",
            },
        )
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


def _direct_writer(transport: asyncio.Transport, chunked: bool) -> DirectWriter:
    """Writes one frame to the socket now, as aiohttp's writer would frame it; refuses
    (False) once the socket holds WRITE_BUDGET unsent bytes, so memory stays bounded."""

    def write(data: bytes) -> bool:
        if transport.is_closing() or transport.get_write_buffer_size() >= WRITE_BUDGET:
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        return True

    return write


async def _write(response: web.StreamResponse, data: bytes, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except TimeoutError:
        transport = response._req.transport if response._req is not None else None
        if transport is not None:
            transport.abort()
        raise _ClientGone from None
    except (ConnectionError, RuntimeError):
        raise _ClientGone from None


async def _run(
    hub: Hub,
    sub: Subscription,
    response: web.StreamResponse,
    subscribed: asyncio.Future[list[None]],
    send_timeout: float,
) -> None:
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
        await _write(response, data, send_timeout)
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
