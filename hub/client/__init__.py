"""A small asyncio client: `Publisher` for backends, `subscribe()` for consumers."""

from hub.client.errors import HubClientError, PublishError, SubscribeError
from hub.client.publisher import Publisher
from hub.client.subscriber import Event, subscribe

__all__ = ["Event", "HubClientError", "PublishError", "Publisher", "SubscribeError", "subscribe"]
