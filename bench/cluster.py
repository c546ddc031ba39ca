"""`python -m bench.cluster`: what a publish and a subscription cost on one Redis and on a
Redis Cluster, measured through the hub's own broker (no HTTP: the broker's side alone).

Starts on free ports a private Redis, a Redis with one replica (what Sentinel runs) and a
Redis Cluster (3 primaries, 3 replicas), Redis pinned to CPU 0 and this process to CPU 1
(`--no-pin` to leave them be). This process plays the hub: its CPU is
`time.process_time()`; Redis's is `INFO cpu` (used_cpu_sys + used_cpu_user) summed over
the primaries (replicas apart), less what the same nodes spend idle over the same time.
Sections (`--sections`):

- publish    CPU per publish, hub and Redis, for a message to 1 channel and to 10
             channels (on several shards), every channel subscribed, so each publish is
             received back once per channel; Redis network bytes per publish. With 8
             publishes in flight (`--concurrency`) and 64 (a busy Redis batches more).
- client     CPU per publish-script call: the broker's cluster link against redis-py's
             RedisCluster running the same EVALSHA (same keys and arguments), one call at
             a time and 100 at once.
- subscribe  time, hub CPU, Redis CPU and Redis memory (used_memory) to subscribe and
             unsubscribe 10,000 channels: one SSUBSCRIBE each on the Cluster, SUBSCRIBE
             of 500 at once on one Redis.
- partition  what partition channels would cost: Redis and hub CPU per message when H
             hub links listen to the one channel a message is published on (H = 1, 10).
- resync     CPU per history read of a stream that missed nothing: what every stream
             of a hub does after any of its pub/sub links reconnects or moves.
- wait       publish latency and throughput with HUB_REPLICAS_ACK=1 (WAIT 1 after each
             script) against without, on the Cluster.

Every section runs `--runs` times; the tables give `lowest..highest (median)` over the
runs and the JSON (`--out`) keeps every run. The Redis processes are the test suite's
(tests/redis_server.py, tests/redis_cluster.py). Every wait is bounded; docs/scaling.md
reads the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any

import redis
import uvloop
from redis.asyncio.cluster import RedisCluster

from hub.broker import Entry, create_broker
from hub.broker.cluster import ClusterRoute
from hub.broker.commands import Script, fixed
from hub.broker.keys import Keys
from hub.broker.live import LiveConnection
from hub.broker.redis import RedisBroker
from hub.broker.writes import Limits, script_call
from hub.config import Settings
from hub.message import Message
from tests.support.redis_cluster import RedisClusterNodes
from tests.support.redis_server import RedisServer

Result = dict[str, Any]
SECTIONS = ("publish", "client", "subscribe", "partition", "resync", "wait")
# About 64 bytes, as in `python -m bench`.
PAYLOAD = '{"t":1700000000.123456,"p":"' + "x" * 34 + '"}'
# Channels a publish measurement cycles through, each subscribed (and written once before).
CHANNELS = 1000
FANOUT = 10
# Publishes in flight for the loaded figures: Redis batches replies as it would when busy.
LOADED = 64
DEADLINE = 120.0  # seconds: the longest any one measurement may take


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


class Counter:
    """A live sink that counts what it is handed (and drops it)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.resyncs = 0

    def deliver(self, channel: str, epoch: int, entry: Entry) -> None:
        self.delivered += 1

    def resync(self, channels: object = None) -> None:
        self.resyncs += 1


async def until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Polls `condition` every 5 ms; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the Redis side ----------------------------------------------------------------------------


@dataclass
class Target:
    """One topology under test: its URL, its nodes, and what they spend idle."""

    name: str
    url: str
    primaries: list[int]
    replicas: list[int]
    clients: dict[int, redis.Redis] = field(default_factory=dict)
    idle: dict[int, float] = field(default_factory=dict)  # CPU seconds per second, per node

    def client(self, port: int) -> redis.Redis:
        if port not in self.clients:
            self.clients[port] = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
        return self.clients[port]

    def info(self, port: int, section: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.client(port).info(section)
        return reply

    def cpu(self, port: int) -> float:
        info = self.info(port, "cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def snapshot(self) -> Snapshot:
        ports = [*self.primaries, *self.replicas]
        stats = {port: self.info(port, "stats") for port in self.primaries}
        return Snapshot(
            time.perf_counter(),
            {port: self.cpu(port) for port in ports},
            {port: int(self.info(port, "memory")["used_memory"]) for port in self.primaries},
            sum(int(s["total_net_input_bytes"]) for s in stats.values()),
            sum(int(s["total_net_output_bytes"]) for s in stats.values()),
            sum(int(s.get("total_net_repl_output_bytes", 0)) for s in stats.values()),
        )

    def measure_idle(self, seconds: float = 2.0) -> None:
        """What each node spends with nothing to do (cron, cluster bus), per second."""
        before = {port: self.cpu(port) for port in [*self.primaries, *self.replicas]}
        time.sleep(seconds)
        self.idle = {port: (self.cpu(port) - cpu) / seconds for port, cpu in before.items()}

    def command(self, port: int, *args: str | int) -> Any:
        return self.client(port).execute_command(*args)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@dataclass
class Snapshot:
    at: float
    cpu: dict[int, float]
    memory: dict[int, int]
    net_in: int
    net_out: int
    net_repl: int


@dataclass
class Spent:
    """Redis's share between two snapshots, idle spending taken out."""

    seconds: float
    primaries: float
    replicas: float
    memory: int
    net_in: int
    net_out: int  # replication included
    net_repl: int


def spent(target: Target, before: Snapshot, after: Snapshot) -> Spent:
    seconds = after.at - before.at

    def busy(ports: list[int]) -> float:
        return sum(after.cpu[p] - before.cpu[p] - target.idle.get(p, 0.0) * seconds for p in ports)

    return Spent(
        seconds,
        busy(target.primaries),
        busy(target.replicas),
        sum(after.memory.values()) - sum(before.memory.values()),
        after.net_in - before.net_in,
        after.net_out - before.net_out,
        after.net_repl - before.net_repl,
    )


class Measure:
    """Hub CPU (this process), Redis CPU and wall time of what runs inside `async with`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.hub = 0.0
        self.redis: Spent | None = None

    async def __aenter__(self) -> Measure:
        self.before = self.target.snapshot()  # Redis first: reading it costs this process
        self._cpu = time.process_time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.hub = time.process_time() - self._cpu
        self.redis = spent(self.target, self.before, self.target.snapshot())

    @property
    def used(self) -> Spent:
        assert self.redis is not None
        return self.redis


def broker_for(target: Target, prefix: str, replicas_ack: int = 0) -> RedisBroker:
    broker = create_broker(
        Settings(redis_url=target.url, key_prefix=prefix, replicas_ack=replicas_ack)
    )
    assert isinstance(broker, RedisBroker)
    return broker


async def spread(calls: Sequence[Callable[[], Awaitable[Any]]], concurrency: int) -> list[float]:
    """Runs `calls` with `concurrency` of them in flight; each call's latency in seconds."""
    latencies: list[float] = []

    async def worker(part: Sequence[Callable[[], Awaitable[Any]]]) -> None:
        for call in part:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(worker(calls[i::concurrency]) for i in range(concurrency)))
    return latencies


# -- sections ----------------------------------------------------------------------------------


async def publish_cost(
    target: Target,
    prefix: str,
    *,
    fanout: int,
    publishes: int,
    concurrency: int,
    subscribed: bool = True,
    replicas_ack: int = 0,
) -> Result:
    """N publishes of one message to `fanout` channels, `concurrency` at once."""
    sink = Counter()
    broker = broker_for(target, prefix, replicas_ack)
    await broker.start(sink)
    try:
        channels = [f"user:{i}" for i in range(CHANNELS)]
        if subscribed:
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(*(broker.subscribe(channel) for channel in channels))

        def message(number: int) -> Message:
            start = number * fanout
            names = tuple(channels[(start + j) % CHANNELS] for j in range(fanout))
            return Message(channels=names, event="message", data=PAYLOAD)

        # Every channel written once before: a hub that has been running.
        warm = [message(i) for i in range(CHANNELS // fanout)]
        await spread([partial(broker.publish, [m]) for m in warm], concurrency)
        messages = [message(i) for i in range(publishes)]
        shards = statistics.mean(_shards(broker, m.channels) for m in messages[:200])
        expected = sink.delivered + publishes * fanout if subscribed else 0
        async with Measure(target) as measured:
            latencies = await spread([partial(broker.publish, [m]) for m in messages], concurrency)
            if subscribed:
                await until(lambda: sink.delivered >= expected, "every publish received")
        used = measured.used
        return {
            "hub_us": measured.hub / publishes * 1e6,
            "redis_us": used.primaries / publishes * 1e6,
            "replicas_us": used.replicas / publishes * 1e6,
            "per_s": publishes / used.seconds,
            "p50_ms": percentile(latencies, 0.5) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
            "net_in_b": used.net_in / publishes,
            "net_out_b": (used.net_out - used.net_repl) / publishes,
            "net_repl_b": used.net_repl / publishes,
            "shards": shards,
            "resyncs": sink.resyncs,
        }
    finally:
        await broker.close()


def _shards(broker: RedisBroker, channels: Sequence[str]) -> int:
    """Primaries that one message's channels live on (1 on one Redis)."""
    route = broker.route
    if not isinstance(route, ClusterRoute):
        return 1
    return len({route.owner(broker.keys.live(channel)) for channel in channels})


async def client_cost(
    target: Target, prefix: str, calls: int, concurrency: int, turn: int = 0
) -> Result:
    """CPU per publish-script call: the broker's cluster link, redis-py's RedisCluster, and
    the broker's whole publish, with the same keys and arguments."""
    broker = broker_for(target, prefix)
    await broker.start(Counter())
    route = broker.route
    assert isinstance(route, ClusterRoute)
    script = Script(files("hub.broker").joinpath("lua", "publish.lua").read_text())
    keys, limits = Keys(prefix), Limits.of(Settings())
    messages = [
        Message(channels=(f"user:{i % CHANNELS}",), event="message", data=PAYLOAD)
        for i in range(calls)
    ]
    prepared = [
        script_call(keys, m.channels, {m.channels[0]: [0]}, [m], limits, None, "SPUBLISH")
        for m in messages
    ]
    cluster = RedisCluster(host="127.0.0.1", port=target.primaries[0])
    try:
        await cluster.initialize()
        sha = await cluster.script_load(script.source)
        assert sha == script.sha

        def ours(k: list[str], a: list[str | int]) -> Awaitable[Any]:
            return route.run(script, k, a)

        def redis_py(k: list[str], a: list[str | int]) -> Awaitable[Any]:
            return cluster.execute_command("EVALSHA", sha, len(k), *k, *a)

        ways: dict[str, Callable[[int], Awaitable[Any]]] = {
            "link": lambda i: ours(*prepared[i]),
            "redis-py": lambda i: redis_py(*prepared[i]),
            "broker.publish": lambda i: broker.publish([messages[i]]),
        }
        result: Result = {}
        names = list(ways)
        for name in names[turn % 3 :] + names[: turn % 3]:  # each run in another order
            way = ways[name]
            # Connections opened and the script known to every primary before measuring.
            await spread([partial(way, i) for i in range(min(calls, 500))], concurrency)
            async with Measure(target) as measured:
                await spread([partial(way, i) for i in range(calls)], concurrency)
            result[name] = {
                "hub_us": measured.hub / calls * 1e6,
                "per_s": calls / measured.used.seconds,
                "redis_us": measured.used.primaries / calls * 1e6,
            }
        return result
    finally:
        await cluster.aclose()
        await broker.close()


async def subscribe_cost(target: Target, prefix: str, count: int) -> Result:
    """Subscribes `count` channels at once, then unsubscribes them."""
    broker = broker_for(target, prefix)
    await broker.start(Counter())
    sharded = isinstance(broker.route, ClusterRoute)
    pattern = f"{prefix}*"

    def on_server() -> dict[int, int]:
        verb = "SHARDCHANNELS" if sharded else "CHANNELS"
        return {p: len(target.command(p, "PUBSUB", verb, pattern)) for p in target.primaries}

    try:
        channels = [f"sub:{i}" for i in range(count)]
        await asyncio.sleep(0.3)  # the links' first PINGs answered
        async with Measure(target) as subscribing:
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(*(broker.subscribe(channel) for channel in channels))
        await asyncio.sleep(0.3)  # replies read, buffers settled
        after = target.snapshot()
        per_node = on_server()
        assert sum(per_node.values()) == count, per_node
        # A link sends its SUNSUBSCRIBEs in one write, in the order of the channels' names:
        # once the last of a node's is gone, all are. Asked about that one only, so that
        # the polling costs next to nothing on either side.
        route = broker.route
        last: dict[int, str] = {}
        for channel in channels:
            owner = (
                route.owner(broker.keys.live(channel)) if isinstance(route, ClusterRoute) else None
            )
            port = owner[1] if owner is not None else target.primaries[0]
            last[port] = max(last.get(port, channel), channel)
        verb = "SHARDNUMSUB" if sharded else "NUMSUB"

        def gone() -> bool:
            return all(
                int(target.command(port, "PUBSUB", verb, broker.keys.live(name))[1]) == 0
                for port, name in last.items()
            )

        async with Measure(target) as unsubscribing:
            for channel in channels:
                broker.unsubscribe(channel)
            await until(gone, "every channel unsubscribed", 60)
        await asyncio.sleep(0.3)
        assert sum(on_server().values()) == 0
        freed = sum(after.memory.values()) - sum(target.snapshot().memory.values())
        return {
            "subscribe_ms": subscribing.used.seconds * 1e3,
            "subscribe_hub_us": subscribing.hub / count * 1e6,
            "subscribe_redis_us": subscribing.used.primaries / count * 1e6,
            "memory_b": (sum(after.memory.values()) - sum(subscribing.before.memory.values()))
            / count,
            "freed_b": freed / count,
            "unsubscribe_ms": unsubscribing.used.seconds * 1e3,
            "unsubscribe_hub_us": unsubscribing.hub / count * 1e6,
            "unsubscribe_redis_us": unsubscribing.used.primaries / count * 1e6,
            "per_node": sorted(per_node.values()),
        }
    finally:
        await broker.close()


async def partition_cost(
    target: Target, prefix: str, hubs: int, publishes: int, concurrency: int
) -> Result:
    """`hubs` sharded links (each a hub's, as the hub makes them) listen to one channel that
    every message is published on: what a partition channel costs per listening hub."""
    broker = broker_for(target, prefix)
    await broker.start(Counter())
    route = broker.route
    assert isinstance(route, ClusterRoute)
    channel = "partition:0"
    owner = route.owner(broker.keys.live(channel))
    assert owner is not None
    sinks = [Counter() for _ in range(hubs)]
    links = [
        LiveConnection(fixed(route.options(owner)), broker.keys, sink, sharded=True)
        for sink in sinks
    ]
    try:
        for link in links:
            link.start()
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(link.subscribe(channel) for link in links))
        message = Message(channels=(channel,), event="message", data=PAYLOAD)
        await spread([lambda: broker.publish([message])] * 200, concurrency)
        await until(lambda: all(s.delivered >= 200 for s in sinks), "the warm-up received")
        expected = 200 + publishes
        async with Measure(target) as measured:
            await spread([lambda: broker.publish([message])] * publishes, concurrency)
            await until(lambda: all(s.delivered >= expected for s in sinks), "all received")
        return {
            "hub_us": measured.hub / publishes * 1e6,
            "redis_us": measured.used.primaries / publishes * 1e6,
            "net_out_b": (measured.used.net_out - measured.used.net_repl) / publishes,
        }
    finally:
        for link in links:
            await link.close()
        await broker.close()


async def resync_cost(target: Target, prefix: str, reads: int, concurrency: int) -> Result:
    """History reads after the last entry (an empty page), as a stream's resync makes."""
    broker = broker_for(target, prefix)
    await broker.start(Counter())
    try:
        channels = [f"user:{i}" for i in range(CHANNELS)]
        message = partial(Message, event="message", data=PAYLOAD)
        await spread([partial(broker.publish, [message((c,))]) for c in channels], concurrency)
        tops = {c: (await broker.history(c, None, 0)).top for c in channels}
        calls = [partial(broker.history, c, tops[c], 500) for c in channels]
        await spread(calls, concurrency)
        calls = (calls * (reads // len(calls) + 1))[:reads]
        async with Measure(target) as measured:
            await spread(calls, concurrency)
        return {
            "hub_us": measured.hub / reads * 1e6,
            "redis_us": measured.used.primaries / reads * 1e6,
            "per_s": reads / measured.used.seconds,
        }
    finally:
        await broker.close()


# -- running -----------------------------------------------------------------------------------


def await_replica(port: int, timeout: float = 30) -> None:
    """Until the replica on `port` has synced with its primary."""
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout} s: the replica on {port} synced")
            time.sleep(0.05)
    finally:
        client.close()


def _pin(pid: int, cpu: int, enabled: bool) -> None:
    if enabled and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {cpu})


async def run_sections(args: argparse.Namespace, targets: dict[str, Target]) -> Result:
    sections = args.sections.split(",")
    results: Result = {section: [] for section in sections}
    cluster = targets["cluster"]
    for run in range(args.runs):
        tag = f"b{os.getpid()}r{run}"
        progress(f"run {run + 1} of {args.runs}")
        if "publish" in sections:
            row: Result = {}
            for name, target in targets.items():
                for fanout in (1, FANOUT):
                    for concurrency in (args.concurrency, LOADED):
                        progress(f"publish: {name}, {fanout} channel(s), {concurrency} at once")
                        row[f"{name}/{fanout}ch/{concurrency}"] = await publish_cost(
                            target,
                            f"{tag}p:",
                            fanout=fanout,
                            publishes=args.publishes // fanout,
                            concurrency=concurrency,
                        )
            results["publish"].append(row)
        if "client" in sections:
            row = {}
            for concurrency in (1, 100):
                progress(f"client: {concurrency} call(s) at once")
                row[str(concurrency)] = await client_cost(
                    cluster, f"{tag}c:", args.publishes, concurrency, run
                )
            results["client"].append(row)
        if "subscribe" in sections:
            row = {}
            for name in ("single", "cluster"):
                target = targets[name]
                progress(f"subscribe: {args.channels} channels, {name}")
                row[name] = await subscribe_cost(target, f"{tag}s{name[0]}:", args.channels)
            results["subscribe"].append(row)
        if "partition" in sections:
            row = {}
            for hubs in (1, 10):
                progress(f"partition: {hubs} listening hub link(s)")
                row[str(hubs)] = await partition_cost(
                    cluster, f"{tag}x:", hubs, args.publishes, args.concurrency
                )
            results["partition"].append(row)
        if "resync" in sections:
            row = {}
            for name in ("single", "cluster"):
                progress(f"resync: {name}")
                row[name] = await resync_cost(targets[name], f"{tag}h:", args.publishes, 100)
            results["resync"].append(row)
        if "wait" in sections:
            row = {}
            for ack in (0, 1):
                for concurrency in (1, args.concurrency, 100):
                    progress(f"wait: HUB_REPLICAS_ACK={ack}, {concurrency} at once")
                    row[f"ack{ack}/{concurrency}"] = await publish_cost(
                        cluster,
                        f"{tag}w:",
                        fanout=1,
                        publishes=args.publishes // (2 if concurrency == 1 else 1),
                        concurrency=concurrency,
                        subscribed=False,
                        replicas_ack=ack,
                    )
            results["wait"].append(row)
    return results


def _span(values: Sequence[float], digits: int = 1) -> str:
    """`low..high (median)` of a few runs."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    low, high, mid = min(values), max(values), statistics.median(values)
    return f"{low:.{digits}f}..{high:.{digits}f} ({mid:.{digits}f})"


def report(results: Result) -> str:
    lines: list[str] = []

    def table(title: str, runs: list[Result], rows: list[str], columns: list[str]) -> None:
        lines.extend(["", f"### {title}", "", "| | " + " | ".join(columns) + " |"])
        lines.append("|---" * (len(columns) + 1) + "|")
        for row in rows:
            cells = []
            for column in columns:
                values = [float(run[row][column]) for run in runs if row in run]
                cells.append(_span(values, 0 if column.endswith("_b") else 2))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")

    if results.get("publish"):
        runs = results["publish"]
        table(
            "publish (per publish; Redis: primaries, idle taken out)",
            runs,
            list(runs[0]),
            ["hub_us", "redis_us", "replicas_us", "per_s", "net_in_b", "net_out_b", "net_repl_b"],
        )
    if results.get("client"):
        flat = [
            {f"{way}, {c} at once": v for c, ways in run.items() for way, v in ways.items()}
            for run in results["client"]
        ]
        table("client (per call, Cluster)", flat, list(flat[0]), ["hub_us", "per_s", "redis_us"])
    if results.get("subscribe"):
        runs = results["subscribe"]
        columns = ["subscribe_ms", "subscribe_hub_us", "subscribe_redis_us", "memory_b"]
        table("subscribe (per channel; ms for all)", runs, list(runs[0]),
              [*columns, "freed_b", "unsubscribe_ms", "unsubscribe_hub_us",
               "unsubscribe_redis_us"])  # fmt: skip
    if results.get("partition"):
        runs = results["partition"]
        table("partition (per message, H hub links on its channel)", runs, list(runs[0]),
              ["hub_us", "redis_us", "net_out_b"])  # fmt: skip
    if results.get("resync"):
        runs = results["resync"]
        table("resync (per history read that finds nothing new, 100 at once)", runs,
              list(runs[0]), ["hub_us", "redis_us", "per_s"])  # fmt: skip
    if results.get("wait"):
        runs = results["wait"]
        table("wait (Cluster, nobody subscribed)", runs, list(runs[0]),
              ["p50_ms", "p99_ms", "per_s", "hub_us", "redis_us", "replicas_us"])  # fmt: skip
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(__doc__ or "").split("\n\n", 1)[1],
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help=", ".join(SECTIONS))
    parser.add_argument("--runs", type=int, default=3, help="runs of every section")
    parser.add_argument("--publishes", type=int, default=5000, help="publishes per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="publishes in flight")
    parser.add_argument("--channels", type=int, default=10000, help="channels to subscribe")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument("--out", default="bench/results/cluster.json", help="JSON results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        _parser().error(f"unknown sections: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="hub-bench-cluster-") as workdir:
        single = RedisServer(Path(workdir) / "single")
        primary = RedisServer(Path(workdir) / "primary")
        replica = RedisServer(
            Path(workdir) / "replica", extra=("--replicaof", "127.0.0.1", str(primary.port))
        )
        nodes = RedisClusterNodes(Path(workdir) / "cluster")
        targets: dict[str, Target] = {}
        try:
            progress("starting one Redis, one with a replica, and a Cluster (3 + 3 replicas)")
            single.start()
            primary.start()
            replica.start()
            nodes.start()
            await_replica(replica.port)
            for server in [single, primary, replica, *nodes.nodes]:
                assert server.process is not None
                _pin(server.process.pid, 0, args.pin)
            _pin(0, 1, args.pin)
            targets["single"] = Target("single", single.url, [single.port], [])
            # What Sentinel runs: one primary and its replica (sentinels cost no publish).
            targets["replicated"] = Target(
                "replicated", primary.url, [primary.port], [replica.port]
            )
            targets["cluster"] = Target(
                "cluster",
                nodes.seed_url,
                [node.port for node in nodes.primaries()],
                [node.port for node in nodes.replicas()],
            )
            for target in targets.values():
                target.measure_idle()
            # As the hub runs: start-up frozen, young collections every 50,000 allocations.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 10, 10)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                results = runner.run(run_sections(args, targets))
        finally:
            for target in targets.values():
                target.close()
            nodes.stop()
            for server in (single, primary, replica):
                server.stop()
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "args": vars(args),
        "idle_cpu_per_s": {n: sum(t.idle.values()) for n, t in targets.items()},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(report(results))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
