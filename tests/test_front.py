"""The lean front: which requests it streams itself, which it hands to aiohttp, and that
both answer alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hub.front import Front, parse_head
from tests.conftest import HubClient


def _front(hub: HubClient) -> Front:
    runner = hub.client.server.runner
    assert runner is not None
    server = runner.server
    assert isinstance(server, Front)
    return server


async def _raw(hub: HubClient, *chunks: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)
    return reader, writer


async def _head(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()


def _get(token: str, extra: str = "", version: str = "1.1") -> bytes:
    return (f"GET /events?token={token} HTTP/{version}\r\nHost: hub\r\n{extra}\r\n").encode()


async def _receives(hub: HubClient, reader: asyncio.StreamReader, user: str) -> None:
    """A message published to `user` arrives on the raw stream."""
    await hub.send(f"to {user}", users=[user])
    body = b""
    async with asyncio.timeout(10):
        while f"data: to {user}\n".encode() not in body:
            body += await reader.read(4096)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_plain_stream_is_served_by_the_front_byte_by_byte(hub: HubClient) -> None:
    request = _get(hub.subscriber_token("fay"))
    reader, writer = await _raw(hub, *(request[i : i + 1] for i in range(len(request))))
    head = await _head(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/event-stream; charset=utf-8\r\n" in head
    assert "Transfer-Encoding: chunked\r\n" in head
    assert "aiohttp" not in head  # aiohttp names itself in Server:; the front does not
    await _until(lambda: len(_front(hub).streams) == 1)
    await _receives(hub, reader, "fay")
    writer.close()
    await _until(lambda: not _front(hub).streams)  # ends with its connection
    # The slot was given back: the user can open max_streams_per_user streams again.
    streams = [await hub.subscribe("fay") for _ in range(hub.settings.max_streams_per_user)]
    for stream in streams:
        stream.close()


@pytest.mark.parametrize(
    ("extra", "version"),
    [
        ("", "1.0"),  # not HTTP/1.1
        ("X-Note: caf\xc3\xa9\r\n", "1.1"),  # bytes outside ASCII in a header
        ("Content-Length: 0\r\n", "1.1"),  # a body, even an empty one
    ],
)
async def test_what_the_front_does_not_read_itself_aiohttp_streams(
    hub: HubClient, extra: str, version: str
) -> None:
    request = _get(hub.subscriber_token("gus"), version=version)
    request = request[:-2] + extra.encode("latin-1") + b"\r\n"
    reader, writer = await _raw(hub, request)
    head = await _head(reader)
    assert head.startswith(f"HTTP/{version} 200 OK\r\n"), head
    assert "aiohttp" in head
    assert not _front(hub).streams
    await _receives(hub, reader, "gus")
    writer.close()


async def test_refusals_are_aiohttps_problem_answers(hub: HubClient) -> None:
    reader, writer = await _raw(hub, _get("not-a-token"))
    head = await _head(reader)
    assert head.startswith("HTTP/1.1 401 Unauthorized\r\n")
    assert "Content-Type: application/problem+json" in head
    writer.close()


async def test_a_request_pipelined_behind_the_head_is_answered_by_aiohttp(
    hub: HubClient,
) -> None:
    token = hub.subscriber_token("hal")
    reader, writer = await _raw(hub, _get(token) + b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert (await _head(reader)).startswith("HTTP/1.1 200 OK\r\n")
    assert not _front(hub).streams  # both requests went to aiohttp
    writer.close()


async def test_other_paths_go_to_aiohttp(hub: HubClient) -> None:
    reader, writer = await _raw(hub, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert (await _head(reader)).startswith("HTTP/1.1 200 OK\r\n")
    writer.close()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /events HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b",
        b"GET /events HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2",
        b"GET /events HTTP/1.1\r\nX-A: 1\r\n folded",
        b"GET /events HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"GET /events HTTP/1.1\r\nUpgrade: websocket",
        b"GET /events HTTP/1.1\r\nBad Name: 1",
        b"GET /events HTTP/1.1\r\nX: a\x00b",
        b"GET /eventsx HTTP/1.1",
        b"GET /events#x HTTP/1.1",
        b"GET  /events HTTP/1.1",
        b"POST /events HTTP/1.1",
        b"GET /events HTTP/1.1\r\nHost: a\r\nHost: b",
        b"GET /events HTTP/1.1\r\nX-Pad: " + b"x" * 9000,
        b"GET /events HTTP/1.1" + b"\r\nX: 1" * 129,
    ],
)
def test_heads_the_front_passes_on(head: bytes) -> None:
    assert parse_head(head) is None


def test_a_head_the_front_reads() -> None:
    parsed = parse_head(
        b"GET /events?topic=a&topic=b%2Bc&token=x+y HTTP/1.1\r\n"
        b"Host: hub\r\nlast-event-id:  abc \r\nCookie: hub_token=t1; other=2"
    )
    assert parsed is not None
    assert parsed.query.getall("topic") == ["a", "b+c"]
    assert parsed.query["token"] == "x y"  # as aiohttp decodes a query
    assert parsed.headers["Last-Event-ID"] == "abc"
    assert parsed.cookies == {"hub_token": "t1", "other": "2"}
