"""CORS for browsers on other origins: listed origins get credentials (cookie auth);
`*` only when configured, and then without credentials, as the Fetch standard requires."""

from __future__ import annotations

from aiohttp import web

from hub.errors import Forbidden

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
ALLOW_METHODS = "GET, POST"


class Cors:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(o.rstrip("/") for o in origins if o != "*")

    def headers_for(self, origin: str | None) -> dict[str, str]:
        if origin is None:
            return {}
        if origin in self._origins:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            }
        if self._any:
            return {"Access-Control-Allow-Origin": "*"}
        return {}

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Adds the headers to every response, streams included, before they are sent."""
        response.headers.update(self.headers_for(request.headers.get("Origin")))

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self.headers_for(request.headers.get("Origin"))
        if not headers:
            raise Forbidden("this origin is not allowed (cors_origins)")
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=headers)
