"""Publish three notifications to alice and print them as her browser would receive them.

Run against a hub (``make run`` prints the tokens)::

    HUB_URL=http://127.0.0.1:8080 HUB_SUBSCRIBER_TOKEN=... HUB_PUBLISHER_TOKEN=... \\
        python examples/publish_and_listen.py
"""

import asyncio
import os

from hub.client import Publisher, subscribe

URL = os.environ.get("HUB_URL", "http://127.0.0.1:8080")


async def listen(received: asyncio.Queue[str]) -> None:
    # Resumes by itself with the last id after any disconnect; `hub.reset` comes as an event.
    async for event in subscribe(URL, os.environ["HUB_SUBSCRIBER_TOKEN"]):
        if event.is_reset:
            print("missed history, refetch state:", event.json())
        await received.put(f"{event.event}: {event.data}")


async def main() -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = asyncio.create_task(listen(received))
    await asyncio.sleep(0.5)  # let the stream open
    async with Publisher(URL, os.environ["HUB_PUBLISHER_TOKEN"]) as publisher:
        for n in range(1, 4):
            await publisher.publish({"n": n}, users=["alice"], event="notification")
    for _ in range(3):
        print(await asyncio.wait_for(received.get(), 10))
    listener.cancel()


if __name__ == "__main__":
    asyncio.run(main())
