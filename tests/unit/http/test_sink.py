"""The lean front's flow control (`Flow`) and its stream sink (`StreamSink`), on a
transport that records what it is asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.delivery.stream import ClientGone, chunk
from hub.http import sink as sink_module
from hub.http.sink import Flow, StreamSink
from hub.http.state import HUB, Hub
from tests.support.hubs import HubClient


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.calls: list[str] = []
        self.unsent = 0  # what the transport says it holds unsent
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True


@pytest.fixture
def broker_kind() -> str:
    return "memory"


@pytest.fixture
def state(hub: HubClient) -> Hub:
    return hub.client.app[HUB]


def _sink(state: Hub, started: list[bool] | None = None) -> tuple[StreamSink, Flow, _Transport]:
    transport = _Transport()
    flow = Flow(transport)
    record = started if started is not None else []
    sink = StreamSink(transport, flow, state, "https://app.example", lambda: record.append(True))
    return sink, flow, transport


def test_reading_is_paused_and_resumed_once_each() -> None:
    transport = _Transport()
    flow = Flow(transport)
    flow.resume_reading()  # not paused: nothing to resume
    flow.pause_reading()
    flow.pause_reading()
    flow.resume_reading()
    flow.resume_reading()
    assert transport.calls == ["pause_reading", "resume_reading"]


async def test_the_head_goes_with_the_first_frame_then_frames_are_chunks(state: Hub) -> None:
    started: list[bool] = []
    sink, _, transport = _sink(state, started)
    await sink.start()
    assert started == [True]  # the connection lets go of the request
    await sink.write(b"retry: 1\n\n")
    assert sink.direct(b"data: x\n\n")
    first, second = transport.written
    head, _, frame = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert frame == chunk(b"retry: 1\n\n")
    assert second == chunk(b"data: x\n\n")


async def test_a_frame_is_refused_directly_when_the_transport_holds_too_much(state: Hub) -> None:
    sink, _, transport = _sink(state)
    transport.unsent = 1 << 30
    assert not sink.direct(b"data: x\n\n")
    assert transport.written == []


async def test_a_write_while_paused_waits_for_the_transport(state: Hub) -> None:
    sink, flow, transport = _sink(state)
    flow.pause_writing()
    write = asyncio.ensure_future(sink.write(b"data: x\n\n"))
    await asyncio.sleep(0.01)
    assert not write.done()
    assert len(transport.written) == 1  # written at once; it is the next that must wait
    flow.resume_writing()
    await asyncio.wait_for(write, 1)
    assert transport.calls == []


async def test_a_client_that_takes_nothing_for_the_send_timeout_is_dropped(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "send_timeout", lambda settings: 0.05)
    sink, flow, transport = _sink(hub.client.app[HUB])
    flow.pause_writing()
    with pytest.raises(ClientGone):
        await asyncio.wait_for(sink.write(b"data: x\n\n"), 1)
    assert transport.calls == ["abort"]


async def test_a_write_waiting_when_the_connection_is_lost_ends_the_stream(state: Hub) -> None:
    sink, flow, _ = _sink(state)
    flow.pause_writing()
    write = asyncio.ensure_future(sink.write(b"data: x\n\n"))
    await asyncio.sleep(0)
    flow.lost()
    with pytest.raises(ClientGone):
        await asyncio.wait_for(write, 1)


async def test_nothing_is_written_to_a_closing_transport(state: Hub) -> None:
    sink, _, transport = _sink(state)
    transport.closing = True
    with pytest.raises(ClientGone):
        await sink.start()
    with pytest.raises(ClientGone):
        await sink.write(b"data: x\n\n")
    await sink.finish()
    assert transport.written == []


async def test_finish_ends_the_chunks_and_closes(state: Hub) -> None:
    sink, _, transport = _sink(state)
    await sink.write(b"data: x\n\n")
    await sink.finish()
    assert transport.written[-1] == b"0\r\n\r\n"
    assert transport.calls == ["close"]
