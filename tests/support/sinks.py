"""A live sink that records what a broker hands it, and messages to publish."""

from __future__ import annotations

import asyncio

from hub.broker import Entry
from hub.message import Message


class RecordingSink:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, int, Entry]] = []
        self.resyncs = 0
        self.arrived = asyncio.Event()

    def deliver(self, channel: str, epoch: int, entry: Entry) -> None:
        self.delivered.append((channel, epoch, entry))
        self.arrived.set()

    def resync(self, channels: object = None) -> None:
        self.resyncs += 1

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.delivered) < count:
                self.arrived.clear()
                await self.arrived.wait()


def message(*channels: str, data: str = "x", event: str = "message") -> Message:
    return Message(channels=channels, event=event, data=data)
