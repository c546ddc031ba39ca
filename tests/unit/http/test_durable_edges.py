"""Durable Streams at their edges (each found by an attacker's review): bounded fork
chains, forks that expire or fail without stranding their source, numbers and text that
are refused rather than failing, JSON only as RFC 8259 has it, offsets read alike by both
stores, bounded bodies and SSE connections."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from hub.auth.verify import mint
from hub.durable.store import MAX_FORK_DEPTH
from hub.http import durable, durable_read
from tests.support.hubs import PUBLISHER_KEY, HubClient, MakeHub

TOKEN = mint(PUBLISHER_KEY, "HS256", sub="w", publish=["stream:*"])
TEXT = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
JSON = {**TEXT, "Content-Type": "application/json"}


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubClient:
    return await make_hub(durable_streams=True)


async def _call(
    hub: HubClient, method: str, name: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, bytes]:
    path = f"/v1/stream/{name}"
    async with hub.client.request(method, path, headers=headers or TEXT, **kw) as response:
        return response.status, await response.read()


async def test_fork_chains_end_at_the_limit_and_read_whole(hub: HubClient) -> None:
    assert (await _call(hub, "PUT", "c/0", data=b"0"))[0] == 201
    for depth in range(1, MAX_FORK_DEPTH + 1):
        fork = {**TEXT, "Stream-Forked-From": f"/v1/stream/c/{depth - 1}"}
        assert (await _call(hub, "PUT", f"c/{depth}", fork, data=str(depth).encode()))[0] == 201
    too_deep = {**TEXT, "Stream-Forked-From": f"/v1/stream/c/{MAX_FORK_DEPTH}"}
    assert (await _call(hub, "PUT", "c/deeper", too_deep))[0] == 400
    status, body = await _call(hub, "GET", f"c/{MAX_FORK_DEPTH}?offset=-1")
    assert status == 200
    assert body == "".join(str(n) for n in range(MAX_FORK_DEPTH + 1)).encode()
    for depth in range(MAX_FORK_DEPTH + 1):  # all gone, the deepest last: every name freed
        assert (await _call(hub, "DELETE", f"c/{depth}"))[0] == 204
    assert (await _call(hub, "PUT", "c/0"))[0] == 201


async def test_a_fork_that_expires_frees_its_deleted_source(hub: HubClient) -> None:
    assert (await _call(hub, "PUT", "e/src", data=b"x"))[0] == 201
    fork = {**TEXT, "Stream-Forked-From": "/v1/stream/e/src", "Stream-TTL": "1"}
    assert (await _call(hub, "PUT", "e/fork", fork))[0] == 201
    assert (await _call(hub, "DELETE", "e/src"))[0] == 204  # kept: the fork reads it
    assert (await _call(hub, "HEAD", "e/src"))[0] == 410
    async with asyncio.timeout(10):
        while (await _call(hub, "HEAD", "e/fork"))[0] != 404:
            await asyncio.sleep(0.2)
    async with asyncio.timeout(10):  # the source goes with its last fork
        while (await _call(hub, "PUT", "e/src"))[0] != 201:
            await asyncio.sleep(0.2)


async def test_a_fork_that_fails_leaves_its_source_free(hub: HubClient) -> None:
    assert (await _call(hub, "PUT", "f/src", JSON, data=b"[1]"))[0] == 201
    bad = {**JSON, "Stream-Forked-From": "/v1/stream/f/src"}
    assert (await _call(hub, "PUT", "f/fork", bad, data=b"{"))[0] == 400
    huge_ttl = {**JSON, "Stream-Forked-From": "/v1/stream/f/src", "Stream-TTL": "9" * 20}
    assert (await _call(hub, "PUT", "f/fork", huge_ttl))[0] == 400
    assert (await _call(hub, "DELETE", "f/src"))[0] == 204
    assert (await _call(hub, "PUT", "f/src", JSON))[0] == 201  # not stranded as gone


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Stream-TTL", "9" * 5000),
        ("Stream-TTL", "9" * 17),
        ("Stream-Fork-Sub-Offset", "9" * 5000),
        ("Stream-Fork-Offset", "0_" + "9" * 5000),
    ],
)
async def test_numbers_too_large_are_refused(hub: HubClient, header: str, value: str) -> None:
    fork = {"Stream-Forked-From": "/v1/stream/n/src"} if "Fork" in header else {}
    await _call(hub, "PUT", "n/src")
    assert (await _call(hub, "PUT", "n/x", {**TEXT, **fork, header: value}))[0] == 400


@pytest.mark.parametrize("offset", ["0_" + "9" * 25, "0_" + "9" * 5000, "-2", "now2"])
async def test_offsets_out_of_range_are_refused(hub: HubClient, offset: str) -> None:
    await _call(hub, "PUT", "o/s", data=b"x")
    for live in ("", "&live=sse", "&live=long-poll"):
        assert (await _call(hub, "GET", f"o/s?offset={offset}{live}"))[0] == 400


async def test_short_offsets_read_alike(hub: HubClient) -> None:
    await _call(hub, "PUT", "o/short", data=b"abc")
    assert await _call(hub, "GET", "o/short?offset=0_0") == (200, b"abc")


@pytest.mark.parametrize(
    "body", [b"1e999", b"[-1e400,2]", b'"\\ud800"', b"[" * 200 + b"]" * 200, b"NaN"]
)
async def test_json_beyond_rfc_8259_is_refused(hub: HubClient, body: bytes) -> None:
    await _call(hub, "PUT", "j/s", JSON)
    assert (await _call(hub, "POST", "j/s", JSON, data=body))[0] == 400
    assert await _call(hub, "GET", "j/s?offset=-1") == (200, b"[]")


async def _raw(hub: HubClient, head: bytes, body: bytes = b"", pause: float = 0) -> bytes:
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    try:
        writer.write(head)
        for byte in body:
            writer.write(bytes([byte]))
            await asyncio.sleep(pause)
        async with asyncio.timeout(20):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_undecodable_header_bytes_are_a_400(hub: HubClient) -> None:
    await _call(hub, "PUT", "u/s")
    for header in (
        b"Producer-Id: \xff\xfe\r\nProducer-Epoch: 0\r\nProducer-Seq: 0",
        b"Stream-Seq: \xff",
    ):
        head = (
            b"POST /v1/stream/u/s HTTP/1.1\r\nHost: hub\r\nContent-Type: text/plain\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" + header + b"\r\n"
            b"Content-Length: 1\r\n\r\nx"
        )
        assert (await _raw(hub, head)).startswith(b"HTTP/1.1 400 ")


async def test_a_body_trickled_past_the_deadline_is_408(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "BODY_TIMEOUT", 0.5)
    await _call(hub, "PUT", "b/s")
    head = (
        b"POST /v1/stream/b/s HTTP/1.1\r\nHost: hub\r\nContent-Type: text/plain\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 10\r\n\r\n"
    )
    assert (await _raw(hub, head, b"0123456789", pause=0.2)).startswith(b"HTTP/1.1 408 ")


async def test_an_sse_connection_ends_after_its_lifetime_even_when_busy(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_read, "SSE_LIFETIME", 1.0)
    await _call(hub, "PUT", "s/busy")
    stop = asyncio.Event()

    async def keep_busy() -> None:
        while not stop.is_set():
            await _call(hub, "POST", "s/busy", data=b"tick")
            await asyncio.sleep(0.1)

    busy = asyncio.create_task(keep_busy())
    try:
        path = "/v1/stream/s/busy?offset=-1&live=sse"
        async with asyncio.timeout(15), hub.client.get(path, headers=TEXT) as response:
            body = await response.read()  # ends: the lifetime is up
        assert b"event: data" in body
    finally:
        stop.set()
        await busy


async def test_an_sse_read_the_client_leaves_has_its_access_line(
    hub: HubClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await _call(hub, "PUT", "l/s", data=b"x")
    path = "/v1/stream/l/s?offset=-1&live=sse"
    async with hub.client.get(path, headers=TEXT) as response:
        await response.content.readuntil(b"event: control")  # the stream is on the wire

    def logged() -> bool:
        return any(path in r.getMessage() and " 200 " in r.getMessage() for r in caplog.records)

    async with asyncio.timeout(10):
        while not logged():
            await asyncio.sleep(0.02)
