"""The benchmark scenarios. Each measures server CPU from /proc, so results hold per CPU-second
on a busy machine; each also checks that what it measured was delivered exactly."""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.load import Publisher, Stream
from bench.procs import TICKS, Started, rss_kib
from hub.auth.verify import mint

Result = dict[str, Any]
# Publishers sending at once in the throughput measurements.
CONCURRENCY = 8


@dataclass
class Context:
    server: Started
    subscriber_key: str
    publisher_key: str
    # Latency samples (seconds) by measurement, for the plot.
    samples: dict[str, list[float]] = field(default_factory=dict)

    def subscriber(self, user: str) -> str:
        return mint(self.subscriber_key, "HS256", sub=user, topics=["*"], ttl=3600)

    def publisher(self) -> Publisher:
        token = mint(self.publisher_key, "HS256", sub="bench", publish=["*"], ttl=3600)
        return Publisher(self.server.url, token)


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def _payload(pad: int = 40) -> dict[str, Any]:
    """About 64 bytes of JSON carrying its send time."""
    return {"t": time.perf_counter(), "p": "x" * pad}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _open_many(ctx: Context, count: int, user: Callable[[int], str], query: str,
                     on_data: Callable[[bytes, float], None]) -> list[Stream]:  # fmt: skip
    streams: list[Stream] = []
    for start in range(0, count, 250):
        batch = [Stream(on_data) for _ in range(start, min(start + 250, count))]
        await asyncio.gather(
            *(
                s.open(ctx.server.url, ctx.subscriber(user(start + i)), query)
                for i, s in enumerate(batch)
            )
        )
        streams += batch
        if (start // 250) % 8 == 0:
            progress(f"{len(streams)}/{count} streams open")
    return streams


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


async def _until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll a counter the streams move (cheaper than an event per delivered frame)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def idle(ctx: Context, streams: int) -> Result:
    rss_before, cpu_before = rss_kib(ctx.server.hub_pid), ctx.server.cpu()["hub"]
    kernel_before = ctx.server.kernel_cpu("hub")
    opened = await _open_many(ctx, streams, lambda n: f"idle{n}", "", lambda d, t: None)
    await asyncio.sleep(1)
    rss_after, cpu_after = rss_kib(ctx.server.hub_pid), ctx.server.cpu()["hub"]
    kernel = _share(ctx.server.kernel_cpu("hub") - kernel_before, cpu_after - cpu_before)
    for stream in opened:
        await stream.close()
    return {
        "streams": streams,
        "kib_per_idle_stream": round((rss_after - rss_before) / streams, 2),
        "cpu_s_to_accept": round(cpu_after - cpu_before, 2),
        "kernel_share": round(kernel, 2),  # of the hub's CPU: accept, socket setup, epoll
    }


async def fanout(ctx: Context, streams: int, publishes: int) -> Result:
    latencies: list[float] = []
    opened = await _open_many(
        ctx, streams, lambda n: f"fan{n}", "topic=fan", lambda d, t: latencies.append(t)
    )
    publisher = ctx.publisher()
    # Throughput: publish as fast as the publisher gets answers.
    before, kernel_before = ctx.server.cpu(), ctx.server.kernel_cpu()
    for _ in range(publishes):
        await publisher.post({"topics": ["fan"], "data": _payload()})
    await _until(lambda: sum(s.events for s in opened) >= streams * publishes)
    after = ctx.server.cpu()
    hub_cpu = after["hub"] - before["hub"]
    kernel = _share(
        ctx.server.kernel_cpu() - kernel_before, sum(after.values()) - sum(before.values())
    )
    progress(f"fan-out throughput: {streams * publishes} deliveries in {hub_cpu:.2f} hub CPU-s"
             f" (server CPU in the kernel: {kernel:.0%})")  # fmt: skip
    # Latency at 10 publishes/s.
    sent_at: dict[int, float] = {}
    latencies.clear()
    received: list[float] = []

    def on_data(data: bytes, now: float) -> None:
        number = int(data.split(b'"n":', 1)[1].split(b",", 1)[0])
        received.append(now - sent_at[number])

    for stream in opened:
        stream.on_data = on_data
    paced = 30
    for n in range(paced):
        sent_at[n] = time.perf_counter()
        await publisher.post({"topics": ["fan"], "data": {"n": n, "p": "x" * 40}})
        await asyncio.sleep(0.1)
    await _until(lambda: len(received) >= streams * paced)
    ctx.samples[f"fan-out, 10 publishes/s x {streams} streams"] = received
    await publisher.close()
    for stream in opened:
        await stream.close()
    return {
        "streams": streams,
        "deliveries_per_hub_cpu_s": round(streams * publishes / hub_cpu),
        "kernel_share": round(kernel, 2),
        "p50_ms_at_10_per_s": round(_percentile(received, 0.5) * 1000, 2),
        "p99_ms_at_10_per_s": round(_percentile(received, 0.99) * 1000, 2),
    }


async def unicast(ctx: Context, users: int, publishes: int) -> Result:
    received: list[float] = []
    sent_at: dict[int, float] = {}

    def on_data(data: bytes, now: float) -> None:
        if data.startswith(b'{"n":'):
            received.append(now - sent_at[int(data[5:].split(b",", 1)[0])])

    opened = await _open_many(ctx, users, lambda n: f"uni{n}", "", on_data)
    publisher = ctx.publisher()
    rng = random.Random(7)
    # Warm-up, not measured: one message to every user, so that every channel exists (as
    # in a hub that has been running; a channel's first publish also creates its history).
    for start in range(0, users, 100):
        end = min(start + 100, users)
        await publisher.post([{"users": [f"uni{n}"], "data": "warm-up"} for n in range(start, end)])
    await _until(lambda: all(s.events for s in opened))
    progress(f"unicast: warmed up, every one of {users} channels published to")

    walls: dict[str, float] = {}
    kernel: dict[str, float] = {}

    async def measured(label: str, count: int, send: Callable[[], Awaitable[None]]) -> float:
        before, kernel_before = ctx.server.cpu(), ctx.server.kernel_cpu()
        expected = sum(s.events for s in opened) + count  # every message reaches one stream
        started = time.perf_counter()
        await send()
        await _until(lambda: sum(s.events for s in opened) >= expected)
        walls[label] = count / (time.perf_counter() - started)
        after = ctx.server.cpu()
        split = {k: round(after[k] - before[k], 2) for k in after}
        cpu = sum(split.values())
        kernel[label] = _share(ctx.server.kernel_cpu() - kernel_before, cpu)
        progress(f"unicast {label}: {count} messages in {cpu:.2f} server CPU-s {split},"
                 f" {kernel[label]:.0%} in the kernel")  # fmt: skip
        return count / max(cpu, 1 / TICKS)  # a tiny run may take less than a clock tick

    # Throughput: several publishers at once, as a busy backend would send.
    rounds = max(1, publishes * 4 // 100 // CONCURRENCY)  # batches of 100 per publisher
    senders = [ctx.publisher() for _ in range(CONCURRENCY)]

    async def each(send: Callable[[Publisher], Awaitable[None]]) -> None:
        await asyncio.gather(*(send(sender) for sender in senders))

    def message() -> dict[str, Any]:
        return {"users": [f"uni{rng.randrange(users)}"], "data": _payload()}

    async def singles() -> None:
        async def send(sender: Publisher) -> None:
            for _ in range(publishes // CONCURRENCY):
                await sender.post(message())

        await each(send)

    async def batches() -> None:
        async def send(sender: Publisher) -> None:
            for _ in range(rounds):
                await sender.post([message() for _ in range(100)])

        await each(send)

    async def ndjson() -> None:
        async def send(sender: Publisher) -> None:
            for _ in range(rounds):
                lines = [
                    f'{{"users":["uni{rng.randrange(users)}"],"data":"{"x" * 50}"}}'
                    for _ in range(100)
                ]
                await sender.post(("\n".join(lines) + "\n").encode(), "application/x-ndjson")

        await each(send)

    whole = publishes // CONCURRENCY * CONCURRENCY
    single_rate = await measured("single", whole, singles)
    batched = rounds * CONCURRENCY * 100
    batch_rate = await measured("batch", batched, batches)
    ndjson_rate = await measured("ndjson", batched, ndjson)
    for sender in senders:
        await sender.close()
    # Latency at 500 publishes/s.
    paced = 1000
    for n in range(paced):
        sent_at[n] = time.perf_counter()
        user = f"uni{rng.randrange(users)}"
        await publisher.post({"users": [user], "data": {"n": n, "p": "x" * 40}})
        await asyncio.sleep(max(0.0, 0.002 - (time.perf_counter() - sent_at[n])))
    await _until(lambda: len(received) >= paced)
    ctx.samples["unicast, 500 publishes/s"] = received
    await publisher.close()
    for stream in opened:
        await stream.close()
    return {
        "users": users,
        "publishes_per_server_cpu_s": round(single_rate),
        "batch_messages_per_server_cpu_s": round(batch_rate),
        "ndjson_messages_per_server_cpu_s": round(ndjson_rate),
        # Wall-clock rates: what --workers changes (per CPU-second figures hardly move).
        "publishes_per_s": round(walls["single"]),
        "batch_messages_per_s": round(walls["batch"]),
        # Share of server CPU spent in the kernel (socket calls, loopback TCP).
        "kernel_share": {label: round(share, 2) for label, share in kernel.items()},
        "p50_ms_at_500_per_s": round(_percentile(received, 0.5) * 1000, 2),
        "p99_ms_at_500_per_s": round(_percentile(received, 0.99) * 1000, 2),
    }


async def publish(ctx: Context, publishes: int) -> Result:
    """Publish throughput with nobody listening: what appending to history costs on its own."""
    senders = [ctx.publisher() for _ in range(CONCURRENCY)]

    async def run(batch: int) -> tuple[float, float]:
        total = publishes if batch == 1 else publishes * 4  # as in unicast
        rounds = max(1, total // CONCURRENCY // batch)

        async def send(sender: Publisher) -> None:
            for n in range(rounds):
                message = {"topics": [f"quiet{n % 100}"], "data": _payload()}
                await sender.post(message if batch == 1 else [message] * batch)

        before, started = ctx.server.cpu(), time.perf_counter()
        await asyncio.gather(*(send(sender) for sender in senders))
        wall = time.perf_counter() - started
        after = ctx.server.cpu()
        cpu = sum(after[k] - before[k] for k in after)
        count = rounds * batch * CONCURRENCY
        progress(f"publish, batches of {batch}: {count} messages in {cpu:.2f} server CPU-s")
        return count / max(cpu, 1 / TICKS), count / wall

    single_cpu, single_wall = await run(1)
    batch_cpu, batch_wall = await run(100)
    for sender in senders:
        await sender.close()
    return {
        "publishes_per_server_cpu_s": round(single_cpu),
        "publishes_per_s": round(single_wall),
        "batch_messages_per_server_cpu_s": round(batch_cpu),
        "batch_messages_per_s": round(batch_wall),
    }


async def _resume_once(ctx: Context, publisher: Publisher, user: str, missed: int) -> float:
    """Seconds from reconnecting with the last id to having every missed event, exactly."""
    seen: list[bytes] = []
    stream = Stream(lambda data, at: seen.append(data))
    await stream.open(ctx.server.url, ctx.subscriber(user))
    await publisher.post({"users": [user], "data": "first"})
    await _until(lambda: len(seen) == 1)
    last_id = stream.last_id.decode()
    await stream.close()
    await publisher.post([{"users": [user], "data": f"m{n}"} for n in range(missed)])
    seen.clear()
    complete = asyncio.Event()  # set by the last event itself: no polling delay in the figure

    def on_data(data: bytes, at: float) -> None:
        seen.append(data)
        if len(seen) >= missed:
            complete.set()

    again = Stream(on_data)
    started = time.perf_counter()
    await again.open(ctx.server.url, ctx.subscriber(user), last_id=last_id)
    async with asyncio.timeout(60):
        await complete.wait()
    elapsed = time.perf_counter() - started
    await again.close()
    if seen != [f"m{n}".encode() for n in range(missed)]:
        raise AssertionError("resume was not exact")
    return elapsed


async def resume(ctx: Context, missed: int, rounds: int) -> Result:
    publisher = ctx.publisher()
    times = [await _resume_once(ctx, publisher, f"res{r}", missed) for r in range(rounds)]
    await publisher.close()
    return {
        "missed": missed,
        "exact": True,
        "median_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(_percentile(times, 0.99) * 1000, 2),
    }
