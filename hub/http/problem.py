"""Every error answered as `application/problem+json` (RFC 9457), by one mapping that the
lean front and aiohttp's handlers (through `problem_middleware`) both use."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.errors import HubError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
# The only headers of aiohttp's own errors that say something to the client.
_KEPT_HEADERS = ("allow", "retry-after")
_FAILED = "the hub failed to handle the request (see its log)"


def problem_body(problem: dict[str, Any]) -> bytes:
    return json.dumps(problem).encode()


def error_answer(exc: BaseException, what: str) -> tuple[int, dict[str, str], bytes]:
    """The status, extra headers and problem+json body that answer `exc`, raised while
    handling `what` (e.g. "GET /events"; never a query string: it may hold a token).

    A HubError answers as itself (logged as a warning when it is a 5xx); an aiohttp
    HTTPException >= 400 keeps its status and reason; anything else is a 500 whose
    traceback is logged here, once.
    """
    if isinstance(exc, HubError):
        if exc.status >= 500:
            log.warning("%s: %s", what, exc.detail)
        return exc.status, exc.headers(), problem_body(exc.problem())
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
        problem = {
            "type": "about:blank",
            "title": exc.reason,
            "status": exc.status,
            "detail": exc.text or exc.reason,
        }
        return exc.status, headers, problem_body(problem)
    log.exception("%s failed", what, exc_info=exc)
    error = HubError(_FAILED)
    return error.status, {}, problem_body(error.problem())


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise  # a redirect is an answer, not an error
        if request.writer.output_size > 0:
            raise  # a response is on the wire already: aiohttp drops the connection
        status, headers, body = error_answer(exc, f"{request.method} {request.path}")
    return web.Response(status=status, body=body, content_type=CONTENT_TYPE, headers=headers)
