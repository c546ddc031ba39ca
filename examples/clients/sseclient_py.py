"""Subscribe with sseclient-py over requests, resuming exactly with Last-Event-ID."""

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

import requests
import sseclient

RETRIED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def follow(
    url: str,
    token: str,
    topics: list[str],
    last_event_id: str,
    on_event: Callable[[str, Any, str], None],
    stop: threading.Event,
) -> str:
    """Calls on_event(type, data, id) for each event until stop is set; returns the last id."""
    delay = 1.0
    while not stop.is_set():
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            with requests.get(
                url, params={"topic": topics}, headers=headers, stream=True, timeout=(10, 60)
            ) as response:
                response.raise_for_status()
                # Bytes come at least every heartbeat (a ping): stop is seen within one.
                chunks = response.iter_content(chunk_size=None)
                live = itertools.takewhile(lambda _: not stop.is_set(), chunks)
                for event in sseclient.SSEClient(live).events():
                    if stop.is_set():
                        break  # neither handed over nor recorded: a resume gets it again
                    if event.id:  # hub.open carries the cursor the stream starts from
                        last_event_id = event.id
                    if event.retry:
                        delay = int(event.retry) / 1000
                    if event.event == "hub.open":
                        continue
                    # Data: JSON, as this app publishes objects (a string arrives as sent).
                    # "hub.reset" ({"reason", "channels"}): history was lost; refetch state.
                    on_event(event.event, json.loads(event.data), event.id or "")
        except RETRIED:
            pass  # the connection broke or the hub is away: resume after the delay
        stop.wait(delay)
    return last_event_id
