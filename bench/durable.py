"""Durable Streams in the benchmark: appends per server CPU-second, Redis bytes per
appended chunk, and the latency of a long-poll reader following a stream live."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import aiohttp
import redis

from bench.procs import TICKS
from bench.scenarios import Context, Result, _percentile, progress
from hub.auth.verify import mint

CHUNK = b"x" * 64
STREAMS = 8


def _headers(ctx: Context) -> dict[str, str]:
    token = mint(ctx.publisher_key, "HS256", sub="bench", publish=["stream:*"], ttl=3600)
    return {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}


async def _create(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    async with session.put(url, headers=headers) as answer:
        assert answer.status in (200, 201), await answer.text()


async def _append_many(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int, body: bytes
) -> None:
    for _ in range(count):
        async with session.post(url, data=body, headers=headers) as answer:
            assert answer.status == 204, await answer.text()


def _redis_memory(ctx: Context) -> int | None:
    if ctx.server.redis_url is None:
        return None
    with redis.Redis.from_url(ctx.server.redis_url) as client:
        return int(client.info("memory")["used_memory"])


async def durable(ctx: Context, appends: int) -> Result:
    base = f"{ctx.server.url}/v1/stream/bench-{uuid.uuid4().hex[:8]}"
    headers = _headers(ctx)
    async with aiohttp.ClientSession() as session:
        urls = [f"{base}/{n}" for n in range(STREAMS)]
        for url in urls:
            await _create(session, url, headers)
        per_stream = max(1, appends // STREAMS)
        before, started = ctx.server.cpu(), time.perf_counter()
        await asyncio.gather(*(_append_many(session, u, headers, per_stream, CHUNK) for u in urls))
        wall = time.perf_counter() - started
        spent = {k: v - before[k] for k, v in ctx.server.cpu().items()}
        cpu = max(sum(spent.values()), 1 / TICKS)
        done = per_stream * STREAMS
        progress(f"{done} appends of 64 B in {cpu:.2f} server CPU-s ({spent})")
        memory = await _memory_per_chunk(ctx, session, f"{base}/memory", headers)
        p50, p99 = await _live_latency(ctx, session, f"{base}/live", headers)
    return {
        "appends_per_server_cpu_s": round(done / cpu),
        "appends_per_s": round(done / wall),
        "redis_bytes_per_chunk": memory,
        "live_p50_ms": p50,
        "live_p99_ms": p99,
    }


async def _memory_per_chunk(
    ctx: Context, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> float | None:
    count = 5000
    await _create(session, url, headers)
    before = _redis_memory(ctx)
    await asyncio.gather(
        *(_append_many(session, url, headers, count // 50, CHUNK) for _ in range(50))
    )
    after = _redis_memory(ctx)
    if before is None or after is None:
        return None
    return round((after - before) / count, 1)


async def _live_latency(
    ctx: Context, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, float]:
    """A long-poll reader follows the stream while chunks carrying their send time are
    appended at 50 a second."""
    await _create(session, url, headers)
    count = 200
    samples: list[float] = []
    reader_headers = {"Authorization": headers["Authorization"]}

    async def follow() -> None:
        offset, buffer = "-1", b""
        while len(samples) < count:
            query = f"?offset={offset}&live=long-poll"
            async with session.get(url + query, headers=reader_headers) as answer:
                body = await answer.read()
                offset = answer.headers.get("Stream-Next-Offset", offset)
            now = time.perf_counter()
            buffer += body
            *lines, buffer = buffer.split(b"\n")
            samples.extend(now - float(line) for line in lines if line)

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    for _ in range(count):
        body = f"{time.perf_counter()}\n".encode()
        async with session.post(url, data=body, headers=headers) as answer:
            assert answer.status == 204
        await asyncio.sleep(0.02)
    async with asyncio.timeout(30):
        await reader
    ctx.samples["durable live read"] = samples
    ms = [s * 1000 for s in samples]
    progress(f"live read: median {statistics.median(ms):.2f} ms over {len(ms)} chunks")
    return round(_percentile(ms, 0.5), 2), round(_percentile(ms, 0.99), 2)
