"""`subscribe()`: an async iterator over a stream that resumes by itself with the last id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from hub.client.errors import SubscribeError
from hub.sse import OPEN  # the opening event: it carries the starting cursor, nothing for the app

RESET = "hub.reset"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    event: str
    data: str

    @property
    def is_reset(self) -> bool:
        """The hub could not replay everything: refetch state (see `json()` for why)."""
        return self.event == RESET

    def json(self) -> Any:
        return json.loads(self.data)


async def subscribe(
    url: str,
    token: str,
    *,
    topics: Sequence[str] = (),
    last_event_id: str | None = None,
    reconnect_delay: float = 1.0,
) -> AsyncGenerator[Event, None]:
    """Events of the token's user and `topics`, across reconnects, with nothing lost.

    After a disconnect it reconnects with the last id it yielded, so the hub
    replays exactly what was missed; a gap the hub cannot fill is yielded as an
    event with `is_reset` true. 401/403/400 raise SubscribeError::

        async for event in subscribe("http://127.0.0.1:8080", token, topics=["news"]):
            print(event.event, event.data)
    """
    params = [("topic", topic) for topic in topics]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            headers = {"Authorization": f"Bearer {token}"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with session.get(
                    url.rstrip("/") + "/events", params=params, headers=headers
                ) as response:
                    if response.status in (400, 401, 403, 429):
                        problem = await response.json(content_type=None)
                        raise SubscribeError(
                            f"subscription refused ({response.status}): {problem.get('detail')}",
                            response.status,
                            problem,
                        )
                    if response.status == 200:
                        async for item in _frames(response):
                            if isinstance(item, int):
                                reconnect_delay = item / 1000
                            elif isinstance(item, str):
                                last_event_id = item  # an id-only block (older hubs)
                            elif item.event == OPEN:
                                last_event_id = item.id or last_event_id
                            else:
                                last_event_id = item.id
                                yield item
            except (aiohttp.ClientError, TimeoutError):
                pass  # the connection dropped: reconnect and resume
            await asyncio.sleep(reconnect_delay)


async def _frames(response: aiohttp.ClientResponse) -> AsyncIterator[Event | str | int]:
    """Events, id-only blocks (their id) and `retry:` values (ms), as EventSource reads them:
    the last id seen stays the event id until a frame brings another."""
    last_id = ""
    id_in_block = False
    kind = ""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            elif name == "id" and "\0" not in value:
                last_id, id_in_block = value, True
            elif name == "retry" and value.isdigit():
                yield int(value)
            continue
        if data:
            yield Event(last_id, kind or "message", "\n".join(data))
        elif id_in_block:
            yield last_id
        id_in_block, kind, data = False, "", []
