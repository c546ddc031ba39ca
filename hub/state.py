"""What the request handlers share: settings, broker, fan-out, token verifiers and CORS."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hub.auth import TokenVerifier
from hub.broker import Broker
from hub.config import Settings
from hub.cors import Cors
from hub.fanout import FanOut
from hub.metrics import Metrics


@dataclass
class Hub:
    settings: Settings
    broker: Broker
    fanout: FanOut
    subscriber_tokens: TokenVerifier
    publisher_tokens: TokenVerifier
    metrics: Metrics
    cors: Cors
    draining: bool = False


HUB = web.AppKey("hub", Hub)
