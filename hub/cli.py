"""The `hub` command: `serve`, `token`, `publish` and `listen`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from hub import __version__
from hub.auth.verify import mint
from hub.client import HubClientError, Publisher, subscribe
from hub.config import Settings, load_settings, stray_variables
from hub.devkeys import DEV_KEYS_FILE, with_dev_keys
from hub.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8080"


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Real-time notification hub.")
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument(
        "--workers", type=int, help="processes sharing the port (default 1; >1 needs Redis)"
    )
    serve.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")

    token = commands.add_parser("token", help="print a signed JWT for development")
    token.add_argument(
        "--sub", "--user", required=True, help="subject: the user id (or publisher name)"
    )
    token.add_argument(
        "--topics", help="subscriber: comma-separated topic globs, e.g. 'news,room:*'"
    )
    token.add_argument("--publisher", action="store_true", help="sign a publisher token")
    token.add_argument(
        "--publish", default="*", help="publisher: comma-separated channel globs (default '*')"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until expiry; 0 = none")
    token.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")

    url_help = f"the hub (default $HUB_URL, else {DEFAULT_URL})"
    publish = commands.add_parser(
        "publish", help="publish a message (signed with the publisher key from the settings)"
    )
    publish.add_argument("data", help="the message: a string, or JSON with --json")
    publish.add_argument("--user", action="append", default=[], help="a user (repeatable)")
    publish.add_argument("--topic", action="append", default=[], help="a topic (repeatable)")
    publish.add_argument("--event", help="the event type (default: message)")
    publish.add_argument("--json", action="store_true", help="parse DATA as JSON")
    publish.add_argument("--url", help=url_help)
    publish.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")

    listen = commands.add_parser(
        "listen", help="print a user's events as they come, resuming after disconnects"
    )
    listen.add_argument("--user", required=True, help="the user to listen as")
    listen.add_argument("--topic", action="append", default=[], help="a topic (repeatable)")
    listen.add_argument("--last-event-id", help="resume after this id ('earliest': all history)")
    listen.add_argument("--json", action="store_true", help="print one JSON object per event")
    listen.add_argument("--url", help=url_help)
    listen.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")
    return parser


def _key(settings: Settings, kind: str, needed_for: str) -> str:
    key: str = getattr(settings, f"{kind}_jwt_key")
    if not key:
        raise ConfigError(
            f"HUB_{kind.upper()}_JWT_KEY: not set, nor in ./{DEV_KEYS_FILE} (which `hub serve` "
            f"writes when it generates development keys); {needed_for}"
        )
    return key


def _token(args: argparse.Namespace, settings: Settings) -> str:
    kind = "publisher" if args.publisher else "subscriber"
    key = _key(settings, kind, "a token needs the hub's key")
    algorithm = getattr(settings, f"{kind}_jwt_algorithm")
    if args.publisher:
        return mint(key, algorithm, sub=args.sub, publish=_split(args.publish), ttl=args.ttl)
    return mint(key, algorithm, sub=args.sub, topics=_split(args.topics), ttl=args.ttl)


def _signed(settings: Settings, kind: str, **claims: object) -> str:
    key = _key(settings, kind, "the hub's key signs the request")
    return mint(key, getattr(settings, f"{kind}_jwt_algorithm"), ttl=300, **claims)  # type: ignore[arg-type]


async def _publish(args: argparse.Namespace, settings: Settings, url: str) -> int:
    if not args.user and not args.topic:
        print("hub publish: give at least one --user or --topic", file=sys.stderr)
        return 2
    try:
        data = json.loads(args.data) if args.json else args.data
    except ValueError as exc:
        print(f"hub publish: DATA is not JSON ({exc})", file=sys.stderr)
        return 2
    token = _signed(settings, "publisher", sub="cli", publish=["*"])
    async with Publisher(url, token) as publisher:
        ids = await publisher.publish(data, users=args.user, topics=args.topic, event=args.event)
    print(json.dumps(ids))
    return 0


async def _listen(args: argparse.Namespace, settings: Settings, url: str) -> int:
    token = _signed(settings, "subscriber", sub=args.user, topics=args.topic)
    async for event in subscribe(url, token, topics=args.topic, last_event_id=args.last_event_id):
        if args.json:
            print(json.dumps({"id": event.id, "event": event.event, "data": event.data}))
        else:
            print(f"{event.event}: {event.data}")
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Options given on the command line: errors name them (--port), not HUB_PORT.
    flags = {
        name: getattr(args, name)
        for name in ("host", "port", "workers")
        if getattr(args, name, None) is not None
    }
    try:
        settings = load_settings(args.config, **flags)
    except ConfigError as exc:
        _warn_stray_variables()  # a misspelt variable is a likely cause
        print(f"hub: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            from hub.server import StartError, serve

            try:
                return serve(settings, flags)
            except StartError as exc:
                print(f"hub: {exc}", file=sys.stderr)
                return 1
        _warn_stray_variables()
        # Keys not configured: the development keys `hub serve` saved in this directory.
        settings = with_dev_keys(settings)
        if args.command == "token":
            print(_token(args, settings))
            return 0
        url = args.url or os.environ.get("HUB_URL") or DEFAULT_URL
        command = _publish if args.command == "publish" else _listen
        return asyncio.run(command(args, settings, url))
    except ConfigError as exc:
        print(f"hub: bad setting: {exc}", file=sys.stderr)
        return 2
    except HubClientError as exc:
        print(f"hub {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _warn_stray_variables() -> None:
    """Printed as they are (`hub serve` logs them instead, in its log format)."""
    for warning in stray_variables(os.environ):
        print(f"hub: warning: {warning}", file=sys.stderr)
