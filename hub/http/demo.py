"""The demo page at `/`; when `demo_tokens` is on, a development login that mints tokens."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from hub.auth.verify import mint
from hub.channels import valid_name
from hub.errors import BadRequest, Forbidden
from hub.http.state import HUB
from hub.message import loads

_PAGE = files("hub").joinpath("static", "index.html")
_ANSWER = files("hub").joinpath("static", "answer.html")


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_PAGE.read_bytes(), content_type="text/html", charset="utf-8")


async def answer(request: web.Request) -> web.Response:
    """A resumable answer: a durable stream followed live, resumed after a reload."""
    return web.Response(body=_ANSWER.read_bytes(), content_type="text/html", charset="utf-8")


async def login(request: web.Request) -> web.Response:
    """Development only: the subscriber token as the `hub_token` cookie, a publisher token in the
    answer. Anyone who can reach it can read and publish anything: never enable it in production."""
    hub = request.app[HUB]
    settings = hub.settings
    if not settings.demo_tokens:
        raise Forbidden(
            "development tokens are off (demo_tokens = false); on a development hub, "
            "HUB_DEMO_TOKENS=true make run turns them on"
        )
    body = loads(await request.read())
    user = body.get("user") if isinstance(body, dict) else None
    if not valid_name(user):
        raise BadRequest("'user' must match [A-Za-z0-9_.@:-]{1,128}")
    subscriber = mint(
        settings.subscriber_jwt_key, settings.subscriber_jwt_algorithm, sub=str(user), topics=["*"]
    )
    publisher = mint(
        settings.publisher_jwt_key, settings.publisher_jwt_algorithm, sub="demo", publish=["*"]
    )
    response = web.json_response({"user": user, "publisher_token": publisher})
    response.set_cookie(
        settings.cookie_name, subscriber, httponly=True, samesite="Strict", path="/"
    )
    return response
