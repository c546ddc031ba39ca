"""`GET /events` admission: the token, the topics, the stream limit; and aiohttp's handler.

Admission is shared by aiohttp's handler and the lean front (`hub.front`), so
both refuse and accept exactly the same requests.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

from aiohttp import HttpVersion11, web

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
    if request.method != "GET":
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])  # HEAD: no stream to show
    hub = request.app[HUB]
    opening = admit(request, hub)
    sink = _ResponseSink(request, send_timeout(hub.settings))
    try:
        await open_stream(hub, opening, sink)
    finally:
        opening.release(hub)
    return sink.response


# As the front's streams; set in this order, as aiohttp-sse set them before.
_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",  # nginx passes each frame on at once
}
_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)
_TCP = (socket.AF_INET, socket.AF_INET6)


class _ResponseSink:
    """A stream's bytes through aiohttp's streaming response."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self.response = web.StreamResponse(headers=_HEADERS)
        # The socket's TCP_USER_TIMEOUT before the stream set it (the connection may outlive it).
        self._saved: tuple[socket.socket, int, int] | None = None

    async def start(self) -> None:
        if self._request.version >= HttpVersion11:
            self.response.enable_chunked_encoding()  # HTTP/1.0: the end is the connection's
        self._set_user_timeout()
        await self.response.prepare(self._request)

    def _set_user_timeout(self) -> None:
        """A client that acknowledges nothing for the send timeout is dropped by the kernel,
        long before writes would block on a full buffer."""
        transport = self._request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if _USER_TIMEOUT is None or sock is None or sock.family not in _TCP:
            return
        self._saved = (sock, _USER_TIMEOUT, sock.getsockopt(socket.IPPROTO_TCP, _USER_TIMEOUT))
        sock.setsockopt(socket.IPPROTO_TCP, _USER_TIMEOUT, int(self._timeout * 1000))

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
        transport = self._request.transport
        if self._saved is not None and transport is not None and not transport.is_closing():
            # Only while the connection is open: a closed socket's number may be reused.
            sock, option, value = self._saved
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
