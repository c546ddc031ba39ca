"""Where a request's token is found: header, cookie, then query (when allowed)."""

from __future__ import annotations

from hub.config import Settings
from hub.errors import Unauthorized
from hub.requestview import RequestView


def bearer(request: RequestView) -> str | None:
    """The bearer token; None without one (another scheme, e.g. a proxy's Basic, is not ours)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def subscriber_token(request: RequestView, settings: Settings) -> str:
    token = bearer(request) or request.cookies.get(settings.cookie_name)
    if not token and settings.allow_query_token:
        token = request.query.get("token")
    if not token:
        where = "an Authorization: Bearer header or the cookie " + settings.cookie_name
        if settings.allow_query_token:
            where += " or ?token="
        raise Unauthorized(f"a subscriber token is required ({where})")
    return token


def publisher_token(request: RequestView) -> str:
    token = bearer(request)
    if not token:
        raise Unauthorized("a publisher token is required (Authorization: Bearer <token>)")
    return token
