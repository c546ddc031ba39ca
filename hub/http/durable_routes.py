"""`/v1/stream/{name}`: the Durable Streams routes, and the headers every answer there has."""

from __future__ import annotations

import logging

from aiohttp import web

from hub.durable.store import Store
from hub.http import durable, durable_read

log = logging.getLogger(__name__)
ROUTE = durable.PREFIX + "{name:.+}"


def install(app: web.Application, store: Store, anonymous: bool) -> None:
    app[durable.STORE] = store
    app[durable.ANONYMOUS] = anonymous
    if anonymous:
        log.warning("durable_streams_anonymous: anyone may create, append, read and delete")
    app.router.add_route("PUT", ROUTE, durable.create)
    app.router.add_route("POST", ROUTE, durable.append)
    app.router.add_route("GET", ROUTE, durable_read.read, name="durable-read")
    app.router.add_route("HEAD", ROUTE, durable.head)
    app.router.add_route("DELETE", ROUTE, durable.delete)
    app.router.add_route("OPTIONS", ROUTE, _preflight)
    app.on_response_prepare.append(_browser_headers)
    app.on_cleanup.append(_close)


async def _preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _browser_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(durable.PREFIX):
        for name, value in durable.BROWSER_HEADERS.items():
            response.headers.setdefault(name, value)


async def _close(app: web.Application) -> None:
    await app[durable.STORE].close()
