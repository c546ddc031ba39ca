"""Subscribe with aiohttp-sse-client2, resuming exactly with Last-Event-ID.

The library reconnects by itself (with Last-Event-Id) when the hub ends a stream
cleanly; when the connection breaks, or the hub is still away when it retries, it
raises, and this loop opens a new EventSource from the last id seen.
"""

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp_sse_client2 import client as sse_client


async def follow(
    url: str,
    token: str,
    topics: list[str],
    last_event_id: str,
    on_event: Callable[[str, Any, str], None],
) -> None:
    """Calls on_event(type, data, id) for each event; reconnects until cancelled."""
    async with aiohttp.ClientSession() as session:
        while True:
            # The query's lastEventId starts the stream; the library's own reconnects
            # send the Last-Event-Id header, which wins over it.
            params = [("topic", topic) for topic in topics]
            if last_event_id:
                params.append(("lastEventId", last_event_id))
            try:
                async with sse_client.EventSource(
                    url,
                    session=session,
                    headers={"Authorization": f"Bearer {token}"},
                    params=params,
                    reconnection_time=timedelta(seconds=0.5),
                ) as source:
                    async for event in source:
                        last_event_id = event.last_event_id or last_event_id
                        if event.type == "hub.open":
                            continue
                        # Data: JSON, as this app publishes objects (a string arrives as sent).
                        # "hub.reset" ({"reason", "channels"}): history was lost; refetch state.
                        on_event(event.type, json.loads(event.data), event.last_event_id)
            except aiohttp.ClientError:
                await asyncio.sleep(1)  # the connection broke or the hub is away
