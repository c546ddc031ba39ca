"""What delivery needs of the running hub: settings, broker, fan-out, token verifiers,
metrics, and whether it is draining. The HTTP side's state extends it."""

from __future__ import annotations

from dataclasses import dataclass

from hub.auth.verify import TokenVerifier
from hub.broker import Broker
from hub.config import Settings
from hub.delivery.fanout import FanOut
from hub.metrics import Metrics


@dataclass
class Engine:
    settings: Settings
    broker: Broker
    fanout: FanOut
    subscriber_tokens: TokenVerifier
    publisher_tokens: TokenVerifier
    metrics: Metrics
    draining: bool = False
