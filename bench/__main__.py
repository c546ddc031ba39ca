"""`python -m bench`: start a hub (on its own Redis, or embedded), run scenarios, write results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import durable, procs, scenarios
from bench.plot import latency_plot
from bench.profile import Profiler
from bench.report import markdown

STANDARD = {"idle": 10000, "fanout": 1000, "unicast": 5000}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenarios", default="idle,fanout,unicast,publish,resume,durable",
        help="comma-separated: idle, fanout, unicast, publish, resume",
    )  # fmt: skip
    parser.add_argument("--embedded", action="store_true", help="the in-memory broker, no Redis")
    parser.add_argument("--streams", type=int, help="idle streams (default 10000)")
    parser.add_argument("--fanout-streams", type=int, help="fan-out streams (default 1000)")
    parser.add_argument("--users", type=int, help="unicast users (default 5000)")
    parser.add_argument("--publishes", type=int, default=5000, help="publishes per measurement")
    parser.add_argument("--workers", type=int, default=1, help="hub serve --workers N")
    parser.add_argument("--redis-url", help="start the hub on this Redis (not a private one)")
    parser.add_argument(
        "--url",
        help="target a running hub instead (keys from HUB_SUBSCRIBER_JWT_KEY and "
        "HUB_PUBLISHER_JWT_KEY; needs --hub-pid)",
    )
    parser.add_argument("--hub-pid", type=int, help="with --url: the hub's pid, for /proc")
    parser.add_argument("--redis-pid", type=int, help="with --url: Redis's pid, for /proc")
    parser.add_argument(
        "--pin", action="store_true", help="hub and Redis on CPU 0, this load generator on CPU 1"
    )
    parser.add_argument(
        "--profile", action="store_true", help="record the hub with py-spy (see --out)"
    )
    parser.add_argument("--out", default="bench/results", help="where to write JSON and Markdown")
    return parser


def _server(args: argparse.Namespace) -> tuple[procs.Started, dict[str, str]]:
    if args.url:
        keys = {
            kind: os.environ.get(f"HUB_{kind.upper()}_JWT_KEY", "")
            for kind in ("subscriber", "publisher")
        }
        if not all(keys.values()) or args.hub_pid is None:
            raise SystemExit(
                "--url needs --hub-pid and the hub's HS256 keys in "
                "HUB_SUBSCRIBER_JWT_KEY and HUB_PUBLISHER_JWT_KEY"
            )
        return procs.running(args.url, args.hub_pid, args.redis_pid), keys
    keys = {"subscriber": secrets.token_hex(32), "publisher": secrets.token_hex(32)}
    server = procs.start(
        embedded=args.embedded,
        keys={
            "HUB_SUBSCRIBER_JWT_KEY": keys["subscriber"],
            "HUB_PUBLISHER_JWT_KEY": keys["publisher"],
        },
        server_cpus={0} if args.pin else None,
        redis_url=args.redis_url,
        max_streams_per_user="0",
        workers=str(args.workers),
        history_max_len="10000",
        durable_streams="true",
    )
    return server, keys


async def _run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, list[float]]]:
    server, keys = _server(args)
    if args.pin:
        os.sched_setaffinity(0, {1})
    ctx = scenarios.Context(server, keys["subscriber"], keys["publisher"])
    results: dict[str, Any] = {}
    profiler = None
    try:
        if args.profile:
            profiler = Profiler(server.hub_pid, Path(args.out))
        for name in args.scenarios.split(","):
            print(f"{name}:", file=sys.stderr, flush=True)
            if name == "idle":
                results[name] = await scenarios.idle(ctx, args.streams or STANDARD["idle"])
            elif name == "fanout":
                streams = args.fanout_streams or STANDARD["fanout"]
                results[name] = await scenarios.fanout(ctx, streams, min(args.publishes, 200))
            elif name == "unicast":
                users = args.users or STANDARD["unicast"]
                results[name] = await scenarios.unicast(ctx, users, args.publishes)
            elif name == "publish":
                results[name] = await scenarios.publish(ctx, args.publishes)
            elif name == "resume":
                results[name] = await scenarios.resume(ctx, 100, 20)
            elif name == "durable":
                results[name] = await durable.durable(ctx, min(args.publishes, 4000))
            else:
                raise SystemExit(f"unknown scenario {name!r}")
            print(f"  = {results[name]}", file=sys.stderr, flush=True)
    finally:
        if profiler is not None:
            profiler.stop()
            print(f"profile: {profiler.summary}", file=sys.stderr)
        server.stop()
    return results, ctx.samples


def main() -> int:
    args = _parser().parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # many streams; the hub inherits it
    results, samples = uvloop.run(_run(args))  # a cheap client: the server is measured
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "broker": "memory" if args.embedded else "redis",
        "target": args.url or "started by the benchmark",
        "pinned": args.pin,
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(record)
    (out / "latest.md").write_text(table)
    if latency_plot(samples, out / "latency.png"):
        print(f"latency plot: {out / 'latency.png'}", file=sys.stderr)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
