"""`GET /events` admission: the token, the topics, the stream limit; and aiohttp's handler.

Admission is shared by aiohttp's handler and the lean front (`hub.front`), so
both refuse and accept exactly the same requests.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from hub.auth import Subscriber
from hub.channels import allowed, topic_channel, user_channel, valid_name
from hub.errors import BadRequest, BrokerUnavailable, Forbidden, TooManyStreams
from hub.requestview import RequestView
from hub.state import HUB, Hub
from hub.stream import ClientGone, chunk, open_stream, room_now, send_timeout, timed_write
from hub.tokens import subscriber_token


@dataclass(frozen=True, slots=True)
class Opening:
    """An admitted stream; its slot (`Fanout.reserve`) is held until `release`."""

    subscriber: Subscriber
    channels: tuple[str, ...]
    # The header wins: EventSource reconnects with its original URL *and* the newer header.
    last_event_id: str | None

    def release(self, hub: Hub) -> None:
        hub.fanout.release(self.channels[0])


def admit(request: RequestView, hub: Hub) -> Opening:
    """Checks a stream request and takes its slot; raises the HubError to answer with."""
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
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    return Opening(subscriber, channels, last_event_id)


def _channels(request: RequestView, hub: Hub, subscriber: Subscriber) -> tuple[str, ...]:
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
    """aiohttp's handler: the streams the front passes on (HTTP/1.0, a request with a
    body or a header twice, and any request a plain aiohttp server gets)."""
    hub = request.app[HUB]
    opening = admit(request, hub)
    sink = _ResponseSink(request, send_timeout(hub.settings))
    try:
        await open_stream(hub, opening, sink)
    finally:
        opening.release(hub)
    return sink.response


class _Response(EventSourceResponse):
    async def _ping(self) -> None:
        """No ping task per stream: the stream loop sends heartbeats when it has been idle."""


class _ResponseSink:
    """A stream's bytes through aiohttp's streaming response."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self.response = _Response(send_timeout=timeout, sep="\n")
        self.response.content_type = "text/event-stream"
        self.response.charset = "utf-8"

    async def start(self) -> None:
        await self.response.prepare(self._request)

    async def write(self, data: bytes) -> None:
        try:
            await timed_write(self.response.write(data), self._timeout, self.abort)
        except (ConnectionError, RuntimeError):
            raise ClientGone from None

    def direct(self, data: bytes) -> bool:
        """One frame to the socket now, framed as aiohttp's writer would, or False."""
        transport = self._request.transport
        if transport is None or not room_now(transport):
            return False
        transport.write(chunk(data) if self.response.chunked else data)
        return True

    def abort(self) -> None:
        if self._request.transport is not None:
            self._request.transport.abort()

    async def finish(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.response.write_eof()
