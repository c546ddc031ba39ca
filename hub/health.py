"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from hub.state import HUB


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if hub.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not await hub.broker.ready():
        return web.json_response({"status": "broker unavailable"}, status=503)
    return web.json_response({"status": "ready"})
