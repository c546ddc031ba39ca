"""The `hub` command: `hub serve` and `hub token`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hub import __version__
from hub.auth import mint
from hub.config import Settings, load_settings
from hub.errors import ConfigError


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Real-time notification hub.")
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")

    token = commands.add_parser("token", help="print a signed JWT for development")
    token.add_argument("--sub", required=True, help="subject: the user id (or publisher name)")
    token.add_argument(
        "--topics", help="subscriber: comma-separated topic globs, e.g. 'news,room:*'"
    )
    token.add_argument("--publisher", action="store_true", help="sign a publisher token")
    token.add_argument(
        "--publish", default="*", help="publisher: comma-separated channel globs (default '*')"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until expiry; 0 = none")
    token.add_argument("--config", help="TOML settings file (default: $HUB_CONFIG)")
    return parser


def _token(args: argparse.Namespace, settings: Settings) -> str:
    kind = "publisher" if args.publisher else "subscriber"
    key = getattr(settings, f"{kind}_jwt_key")
    if not key:
        raise ConfigError(f"HUB_{kind.upper()}_JWT_KEY: not set; a token needs the hub's key")
    algorithm = getattr(settings, f"{kind}_jwt_algorithm")
    if args.publisher:
        return mint(key, algorithm, sub=args.sub, publish=_split(args.publish), ttl=args.ttl)
    return mint(key, algorithm, sub=args.sub, topics=_split(args.topics), ttl=args.ttl)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            from hub.server import serve

            return serve(load_settings(args.config, host=args.host, port=args.port))
        print(_token(args, load_settings(args.config)))
        return 0
    except ConfigError as exc:
        print(f"hub: bad setting: {exc}", file=sys.stderr)
        return 2
