"""Admission of a stream request: the token, the topics, the per-user stream limit.

Shared by aiohttp's handler and the lean front (`hub.http.connection`), so both refuse and
accept exactly the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.auth.extract import subscriber_token
from hub.auth.verify import Subscriber
from hub.channels import allowed, topic_channel, user_channel, valid_name
from hub.delivery.engine import Engine
from hub.delivery.parameters import NO_BODY, StreamBody
from hub.errors import BadRequest, BrokerUnavailable, Forbidden, TooManyStreams
from hub.requestview import RequestView


@dataclass(frozen=True, slots=True)
class Opening:
    """An admitted stream; its slot (`Fanout.reserve`) is held until `release`."""

    subscriber: Subscriber
    channels: tuple[str, ...]
    # The header wins: EventSource reconnects with its original URL *and* the newer header.
    last_event_id: str | None

    def release(self, hub: Engine) -> None:
        hub.fanout.release(self.channels[0])


def admit(request: RequestView, hub: Engine, body: StreamBody = NO_BODY) -> Opening:
    """Checks a stream request (and the parameters a `POST /events` body adds) and takes
    its slot; raises the HubError to answer with."""
    settings = hub.settings
    if hub.draining:
        raise BrokerUnavailable("the hub is shutting down")
    if len(request.query_string) > settings.max_query_length:
        raise BadRequest(f"the query string is over {settings.max_query_length} characters")
    subscriber = hub.subscriber_tokens.subscriber(subscriber_token(request, settings))
    channels = _channels(request, hub, subscriber, body.topics)
    # The slot is taken before the first await, so concurrent opens cannot pass the limit.
    if not hub.fanout.reserve(channels[0], settings.max_streams_per_user):
        raise TooManyStreams(
            f"user {subscriber.user!r} already has {settings.max_streams_per_user} open streams"
        )
    last_event_id = (
        request.headers.get("Last-Event-ID")
        or body.last_event_id
        or request.query.get("lastEventId")
    )
    return Opening(subscriber, channels, last_event_id)


def _channels(
    request: RequestView, hub: Engine, subscriber: Subscriber, more: tuple[str, ...]
) -> tuple[str, ...]:
    topics = list(dict.fromkeys([*request.query.getall("topic", []), *more]))
    if len(topics) > hub.settings.max_topics_per_stream:
        raise BadRequest(f"too many topics ({len(topics)} > {hub.settings.max_topics_per_stream})")
    for topic in topics:
        if not valid_name(topic):
            raise BadRequest(f"topic {topic!r} does not match [A-Za-z0-9_.@:-]{{1,128}}")
        if not allowed(topic, subscriber.topic_grants):
            raise Forbidden(f"the token does not allow topic {topic!r}")
    return (user_channel(subscriber.user), *(topic_channel(t) for t in topics))
