"""One middleware maps every error to an `application/problem+json` answer (RFC 9457)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.errors import HubError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"


def problem_body(problem: dict[str, Any]) -> bytes:
    return json.dumps(problem).encode()


def problem_response(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(
        status=status,
        body=problem_body(body),
        content_type=CONTENT_TYPE,
        headers=headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HubError as exc:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.detail)
        problem = exc.problem()
        return problem_response(
            exc.status,
            problem.pop("title"),
            problem.pop("detail"),
            exc.headers(),
            **{k: v for k, v in problem.items() if k not in ("type", "status")},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problem_response(exc.status, exc.reason, exc.text or exc.reason, headers)
