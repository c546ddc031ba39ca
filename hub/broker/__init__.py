"""Brokers: the embedded in-memory one and Redis, behind one interface."""

from hub.broker.base import Broker, Entry, HistoryPage, Idempotency, LiveSink, entry_id
from hub.config import Settings


def create_broker(settings: Settings) -> Broker:
    """The Redis broker when `redis_url` is set, else the embedded in-memory one."""
    if settings.uses_redis:
        from hub.broker.redis import RedisBroker

        return RedisBroker(settings)
    from hub.broker.memory import MemoryBroker

    return MemoryBroker(settings)


__all__ = ["Broker", "Entry", "HistoryPage", "Idempotency", "LiveSink", "create_broker", "entry_id"]
