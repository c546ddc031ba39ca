"""The SSE wire format, byte for byte: in the encoder and through the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import re
from asyncio import StreamReader
from collections.abc import AsyncIterator

from hub import sse
from tests.support.hubs import HubClient


def test_event_body_splits_every_line_end() -> None:
    assert sse.event_body("message", "a\nb\r\nc\rd") == (
        b"event: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )


def test_event_body_keeps_empty_lines_and_spaces() -> None:
    assert sse.event_body("t", "") == b"event: t\ndata: \n\n"
    assert sse.event_body("t", "\n") == b"event: t\ndata: \ndata: \n\n"
    assert sse.event_body("t", " lead") == b"event: t\ndata:  lead\n\n"


def test_frame_and_control_lines() -> None:
    assert sse.frame("c1", b"event: t\ndata: x\n\n") == b"id: c1\nevent: t\ndata: x\n\n"
    assert sse.opening(2500, None) == b"retry: 2500\nevent: hub.open\ndata: {}\n\n"
    assert sse.opening(2500, "c1") == b"retry: 2500\nid: c1\nevent: hub.open\ndata: {}\n\n"
    assert sse.PING == b": ping\n"  # no blank line: nothing for a parser to dispatch


async def test_wire_bytes_for_multiline_custom_type_and_unicode(hub: HubClient) -> None:
    stream = await hub.subscribe("wire")
    await hub.send("line 1\nline 2\r\nline 3", users=["wire"], event="chat.reply")
    await hub.send({"emoji": "🎉", "text": "héllo\nwörld"}, users=["wire"])
    await hub.send("日本語", users=["wire"], event="x:y-z_1.2")
    expected_bodies = [
        "event: chat.reply\ndata: line 1\ndata: line 2\ndata: line 3\n\n",
        'event: message\ndata: {"emoji":"🎉","text":"héllo\\nwörld"}\n\n',
        "event: x:y-z_1.2\ndata: 日本語\n\n",
    ]
    raw = b""
    while raw.count(b"\n\n") < 3:
        raw += await stream.response.content.readany()
    frames = raw.decode().split("\n\n")[:3]
    for frame, body in zip(frames, expected_bodies, strict=True):
        id_line, _, rest = frame.partition("\n")
        assert id_line.startswith("id: ")
        assert "\r" not in id_line
        assert rest + "\n\n" == body
    stream.close()


async def test_stream_opens_with_retry_and_its_starting_cursor(hub: HubClient) -> None:
    response = await hub.client.get(
        "/events", headers={"Authorization": f"Bearer {hub.subscriber_token('w2')}"}
    )
    first = (await response.content.readany()).decode()
    retry, cursor, end = first.split("\n", 2)
    assert (retry, end) == ("retry: 3000", "event: hub.open\ndata: {}\n\n")
    assert cursor.startswith("id: ")
    assert len(cursor) > len("id: ")
    response.close()


@contextlib.asynccontextmanager
async def _raw_stream(hub: HubClient, request: str) -> AsyncIterator[tuple[bytes, StreamReader]]:
    """The head of the answer to `request`, and the reader of what follows."""
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    try:
        writer.write(request.encode())
        yield await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10), reader
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_http10_stream_gets_every_frame_unframed(hub: HubClient) -> None:
    """HTTP/1.0 has no chunked encoding (the stream ends with its connection): live events
    written straight to the socket go as they are, like the rest (aiohttp serves it)."""
    token = hub.subscriber_token("old")
    request = f"GET /events HTTP/1.0\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\r\n"
    async with _raw_stream(hub, request) as (head, reader):
        assert head.startswith(b"HTTP/1.0 200 OK\r\n")
        assert b"Transfer-Encoding" not in head
        assert b"Content-Type: text/event-stream; charset=utf-8\r\n" in head
        opening = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
        assert re.fullmatch(rb"retry: \d+\nid: [0-9a-z._]+\nevent: hub.open\ndata: {}\n\n", opening)
        await hub.send("live", users=["old"])
        frame = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
        assert re.fullmatch(rb"id: [0-9a-z._]+\nevent: message\ndata: live\n\n", frame), frame


async def test_an_aiohttp_stream_has_the_front_streams_headers_and_chunks(hub: HubClient) -> None:
    """A header twice sends the stream to aiohttp: same headers, chunked frames."""
    token = hub.subscriber_token("twice")
    request = (
        f"GET /events HTTP/1.1\r\nHost: hub\r\nX-A: 1\r\nX-A: 2\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    async with _raw_stream(hub, request) as (head, reader):
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert lines[1:6] == [
            "Content-Type: text/event-stream; charset=utf-8",
            "Cache-Control: no-cache",
            "Connection: keep-alive",
            "X-Accel-Buffering: no",
            "Transfer-Encoding: chunked",
        ]
        size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 10), 16)
        opening = await asyncio.wait_for(reader.readexactly(size + 2), 10)
        assert opening.startswith(b"retry: ")
        await hub.send("live", users=["twice"])
        size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 10), 16)
        frame = await asyncio.wait_for(reader.readexactly(size + 2), 10)
        assert re.fullmatch(rb"id: [0-9a-z._]+\nevent: message\ndata: live\n\n\r\n", frame), frame


async def test_head_of_events_is_405_allowing_get_and_post(hub: HubClient) -> None:
    async with hub.client.request("HEAD", "/events") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET,POST"
