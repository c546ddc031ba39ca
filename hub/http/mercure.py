"""`/.well-known/mercure`: Mercure subscribers' streams and publishers' updates, on the
hub's engine (`hub.mercure`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.auth.verify import Subscriber
from hub.delivery.admission import Opening
from hub.delivery.publishing import counted
from hub.delivery.stream import open_stream, send_timeout
from hub.errors import BadRequest, BrokerUnavailable, UnsupportedMediaType
from hub.http.body import expect_continue, read_body_within
from hub.http.events import ResponseSink
from hub.http.state import HUB, Hub
from hub.mercure.service import Mercure
from hub.mercure.subscription import MercureSubscription
from hub.mercure.update import LOG, parse_form

MERCURE = web.AppKey("mercure", Mercure)
FORM = "application/x-www-form-urlencoded"
PATH = "/.well-known/mercure"
# A publish form must be all there within this many seconds.
BODY_TIMEOUT = 10.0


def install(app: web.Application, mercure: Mercure) -> None:
    app[MERCURE] = mercure
    app.router.add_get(PATH, subscribe)
    # A body is asked for (100 Continue) only once the publisher's token has passed.
    app.router.add_post(PATH, publish, expect_handler=expect_continue(_publisher_known))
    app.router.add_route("OPTIONS", PATH, app[HUB].cors.preflight)


async def subscribe(request: web.Request) -> web.StreamResponse:
    hub, mercure = request.app[HUB], request.app[MERCURE]
    if hub.draining:
        raise BrokerUnavailable("the hub is shutting down")
    grants = mercure.subscriber(request)
    selectors = mercure.selectors(request)
    last_event_id = (
        request.headers.get("Last-Event-ID")
        or request.query.get("lastEventID")
        or request.query.get("last_event_id")
    )
    settings = hub.settings
    sink = ResponseSink(request, send_timeout(settings))
    start = None
    if last_event_id:
        if len(last_event_id) > 4096:
            raise BadRequest("the last event id is longer than 4096 characters")
        start, answered = await mercure.resume_point(hub, last_event_id, grants)
        sink.response.headers["Last-Event-ID"] = answered
        sink.response.headers["Mercure-Last-Event-ID"] = answered
    sub = MercureSubscription(
        selectors,
        grants,
        mercure.index,
        settings.stream_queue_size,
        hub.metrics,
        settings.stream_queue_bytes,
    )
    user = "mercure" if grants.publish or grants.subscribe else "mercure-anonymous"
    opening = Opening(Subscriber(user, (), grants.expires_at), (LOG,), start)
    await open_stream(hub, opening, sink, sub)
    return sink.response


async def publish(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # Shielded: a publish whose client leaves still completes, as every publish does.
    update_id = await asyncio.shield(counted(hub, _publish(request, hub)))
    return web.Response(text=update_id, content_type="text/plain")


async def _publisher_known(request: web.Request) -> None:
    request.app[MERCURE].publisher(request)


async def _publish(request: web.Request, hub: Hub) -> str:
    mercure = request.app[MERCURE]
    grants = mercure.publisher(request)  # before the body is read: no body from a stranger
    if request.content_type != FORM:
        raise UnsupportedMediaType(f"Content-Type must be {FORM}, not {request.content_type!r}")
    limit = hub.settings.max_payload_bytes * 3 + 65536  # percent-encoding triples a byte
    body = await read_body_within(request, limit, BODY_TIMEOUT)
    update = parse_form(body, hub.settings.max_payload_bytes)
    return await mercure.publish(hub, grants, update)
