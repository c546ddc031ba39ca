"""What the request handlers share: the engine, and the HTTP side's own CORS policy."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hub.delivery.engine import Engine
from hub.http.cors import Cors


@dataclass(kw_only=True)
class Hub(Engine):
    cors: Cors


HUB = web.AppKey("hub", Hub)
