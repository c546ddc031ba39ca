"""Subscribe with httpx-sse, resuming exactly with Last-Event-ID after any disconnect."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import aconnect_sse


async def follow(
    url: str,
    token: str,
    topics: list[str],
    last_event_id: str,
    on_event: Callable[[str, Any, str], None],
) -> None:
    """Calls on_event(type, data, id) for each event; reconnects until cancelled."""
    delay = 1.0
    # httpx's default read timeout (5 s) is shorter than the hub's heartbeat (15 s).
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client:
        while True:
            headers = {"Authorization": f"Bearer {token}"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with aconnect_sse(
                    client, "GET", url, params={"topic": topics}, headers=headers
                ) as source:
                    source.response.raise_for_status()
                    async for sse in source.aiter_sse():
                        if sse.id:  # hub.open carries the cursor the stream starts from
                            last_event_id = sse.id
                        if sse.retry is not None:
                            delay = sse.retry / 1000
                        if sse.event == "hub.open":
                            continue
                        # Data: JSON, as this app publishes objects (a string arrives as sent).
                        # "hub.reset" ({"reason", "channels"}): history was lost; refetch state.
                        on_event(sse.event, json.loads(sse.data), sse.id)
            except httpx.TransportError:
                pass  # the connection broke or the hub is away: resume after the delay
            await asyncio.sleep(delay)
