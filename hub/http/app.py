"""The aiohttp application: routes, shared state and its lifecycle."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from hub.auth.verify import TokenVerifier
from hub.broker import Broker, create_broker
from hub.broker.redis import RedisBroker
from hub.config import MAX_REQUEST_LINE, Settings
from hub.delivery.fanout import FanOut
from hub.delivery.reasons import Close
from hub.durable.memory import MemoryStore
from hub.durable.redis import RedisStore
from hub.http import demo, events, health, openapi, publish
from hub.http.accesslog import streams_left_logged
from hub.http.body import expect_continue
from hub.http.cors import Cors
from hub.http.durable_routes import install as install_durable
from hub.http.mercure import install as install_mercure
from hub.http.problem import problem_middleware
from hub.http.state import HUB, Hub
from hub.mercure.service import Mercure
from hub.mercure.update import LOG
from hub.metrics import Metrics
from hub.tasks import stop

log = logging.getLogger(__name__)


def create_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    broker = broker or create_broker(settings)
    hub = Hub(
        settings=settings,
        broker=broker,
        fanout=FanOut(broker),
        subscriber_tokens=TokenVerifier.for_settings(settings, "subscriber"),
        publisher_tokens=TokenVerifier.for_settings(settings, "publisher"),
        metrics=Metrics(),
        cors=Cors(settings.cors_origins),
    )
    broker.on_reconnect = hub.metrics.broker_reconnects.inc
    app = web.Application(
        middlewares=[streams_left_logged, problem_middleware],
        client_max_size=settings.max_body_bytes,
        # Long query strings reach the handler, which answers with a problem+json 400.
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )
    app[HUB] = hub
    # An identity provider's keys: fetched at start-up and kept fresh in the background.
    app.on_startup.append(_start_tokens)
    app.on_cleanup.append(_close_tokens)
    app.router.add_get("/events", events.events)
    # A body is asked for (100 Continue) only once the token has passed.
    events_expect = expect_continue(events.subscriber_known)
    app.router.add_post("/events", events.events, expect_handler=events_expect)
    publish_expect = expect_continue(publish.publisher_known)
    app.router.add_post("/publish", publish.publish, expect_handler=publish_expect)
    cors = hub.cors
    app.on_response_prepare.append(cors.on_prepare)
    for path in ("/events", "/publish"):
        app.router.add_route("OPTIONS", path, cors.preflight)
    if settings.demo_page:
        app.router.add_get("/", demo.page)
        app.router.add_post("/demo/login", demo.login)
        if settings.durable_streams:
            app.router.add_get("/demo/answer", demo.answer)
    if settings.mercure:
        mercure = Mercure(settings)
        hub.fanout.route(LOG, mercure.index)
        install_mercure(app, mercure)
    if settings.durable_streams:
        durable_store = (
            RedisStore(broker, hub.fanout) if isinstance(broker, RedisBroker) else MemoryStore()
        )
        install_durable(app, durable_store, settings.durable_streams_anonymous)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_get("/openapi.json", openapi.openapi)
    app.on_startup.append(_start)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_close)
    return app


_TIMER = web.AppKey("timer", asyncio.Task[None])


async def _start_tokens(app: web.Application) -> None:
    for verifier in (app[HUB].subscriber_tokens, app[HUB].publisher_tokens):
        await verifier.start()


async def _close_tokens(app: web.Application) -> None:
    for verifier in (app[HUB].subscriber_tokens, app[HUB].publisher_tokens):
        await verifier.close()


async def _start(app: web.Application) -> None:
    hub = app[HUB]
    await hub.broker.start(hub.fanout)
    app[_TIMER] = asyncio.create_task(
        hub.fanout.run_timer(hub.settings.heartbeat_interval), name="hub-stream-timer"
    )


async def _drain(app: web.Application) -> None:
    """Stop every open stream cleanly; clients resume elsewhere with their last id."""
    hub = app[HUB]
    hub.draining = True
    log.info("draining: closing %d open stream(s)", len(hub.fanout.streams))
    hub.fanout.close_all(Close.SHUTDOWN)


async def _close(app: web.Application) -> None:
    await stop(app.get(_TIMER))
    await app[HUB].broker.close()
