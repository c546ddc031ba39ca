"""Liveness and readiness probes, and the metrics endpoint."""

from __future__ import annotations

from aiohttp import web

from hub.http.state import HUB


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    metrics = request.app[HUB].metrics
    response = web.Response(body=metrics.render())
    response.headers["Content-Type"] = metrics.content_type
    return response


async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if hub.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not await hub.broker.ready():
        return web.json_response({"status": "broker unavailable"}, status=503)
    return web.json_response({"status": "ready"})
