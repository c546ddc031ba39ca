"""`hub serve`: start-up messages, development keys, and the HTTP server's lifecycle."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import Collection, Mapping
from typing import Any

from hub import logs
from hub.auth.verify import TokenVerifier, mint
from hub.config import Settings, setting_name, stray_variables
from hub.devkeys import DEV_KEYS_FILE, read_dev_keys, unconfigured_keys, write_dev_keys
from hub.errors import ConfigError
from hub.http.app import create_app
from hub.http.serving import HubServer
from hub.workers import Supervisor

log = logging.getLogger("hub")


class StartError(Exception):
    """The hub cannot listen where it is told to: one line, exit 1."""


def with_keys(
    settings: Settings, saved: Mapping[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """Development keys for the kinds with no key and no JWKS URL configured: the `saved` ones
    (a previous run's) where they fit, else random ones. Returns the settings and the keys
    filled in, by setting name ({} when every key is configured)."""
    missing = unconfigured_keys(settings)
    for name in missing:
        kind = name.removesuffix("_jwt_key")
        if not getattr(settings, f"{kind}_jwt_algorithm").startswith("HS"):
            raise ConfigError(f"HUB_{kind.upper()}_JWT_KEY: required with a public-key algorithm")
    if not missing:
        return settings, {}
    # 64 random bytes, base64url: long enough for HS512, safe in a shell and a .env file.
    keys: dict[str, Any] = {
        name: (saved or {}).get(name) or secrets.token_urlsafe(64) for name in missing
    }
    try:
        return dataclasses.replace(settings, **keys), keys
    except ConfigError:  # a saved key too short for this algorithm, or both the same: new ones
        keys = {name: secrets.token_urlsafe(64) for name in missing}
        return dataclasses.replace(settings, **keys), keys


def _keep_dev_keys(keys: Mapping[str, str], saved: Mapping[str, str]) -> str:
    """Saves newly generated keys for the command line and the next start; says where they are
    (never what they are)."""
    where = os.path.abspath(DEV_KEYS_FILE)
    if all(saved.get(name) == value for name, value in keys.items()):
        return f"using the development keys saved to {where} earlier (delete it for new ones)"
    try:
        write_dev_keys(keys)
    except OSError as exc:
        return (
            f"generated random keys for this run only (cannot save them to {where}: "
            f"{(exc.strerror or str(exc)).lower()})"
        )
    return (
        f"generated development keys, saved to {where} (mode 0600): `hub token`, `hub publish` "
        "and `hub listen` run in this directory sign with them, and the next start reuses them"
    )


def _announce_dev_keys(settings: Settings, kept: str) -> None:
    if settings.subscriber_jwks_url or settings.publisher_jwks_url:
        # One kind's keys are an identity provider's: no ready-made pair to print.
        log.warning(
            "a JWKS URL for one kind of token but no key for the other: %s; "
            "set HUB_SUBSCRIBER_JWT_KEY/HUB_PUBLISHER_JWT_KEY or the JWKS URL",
            kept,
        )
        return
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    base = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    subscriber = mint(
        settings.subscriber_jwt_key, settings.subscriber_jwt_algorithm, sub="alice", topics=["*"]
    )
    publisher = mint(
        settings.publisher_jwt_key, settings.publisher_jwt_algorithm, sub="dev", publish=["*"]
    )
    log.warning(
        "no JWT keys configured: %s; set HUB_SUBSCRIBER_JWT_KEY and HUB_PUBLISHER_JWT_KEY "
        "to use your own",
        kept,
    )
    print(
        f"\nSubscriber token (user alice, all topics, 1 h):\n  {subscriber}\n"
        f"Publisher token (all channels, 1 h):\n  {publisher}\n\n"
        f"Listen:   curl -N '{base}/events?token={subscriber}'\n"
        f"Publish:  curl -X POST {base}/publish -H 'Authorization: Bearer {publisher}' "
        "-H 'Content-Type: application/json' "
        """-d '{"users": ["alice"], "data": "hello"}'\n""",
        flush=True,
    )


def _warn_demo_tokens(settings: Settings) -> None:
    if settings.demo_tokens:
        host = settings.host
        log.warning(
            "HUB_DEMO_TOKENS is on: anyone who can reach this hub (%s, port %d) can get tokens "
            "for any user at POST /demo/login and read and publish anything; "
            "for development only, never in production",
            "every interface" if host in ("", "0.0.0.0", "::") else host,
            settings.port,
        )


def event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    if settings.uvloop:
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: using asyncio's event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def check(settings: Settings, flags: Collection[str] = ()) -> None:
    """What would stop the hub as it starts, found before anything starts (and before
    workers fork, each of which would fail the same way): its keys, and its address.
    `flags`: the settings given as command-line options, named so in errors."""
    for kind in ("subscriber", "publisher"):  # as create_app builds them (keys not fetched)
        TokenVerifier.for_settings(settings, kind)
    try:
        addresses = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, socktype, proto, _, address in addresses:
            # Bound, never listening, and closed at once, with the options the server uses.
            with socket.socket(family, socktype, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if settings.workers > 1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        raise _cannot_listen(settings, flags, exc) from None


def _cannot_listen(settings: Settings, flags: Collection[str], exc: OSError) -> StartError:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    names = f"{setting_name('host', flags)}, {setting_name('port', flags)}"
    # os.strerror: the errno's own words, not asyncio's wrapping; getaddrinfo's are negative.
    code = exc.errno
    reason = os.strerror(code) if code is not None and code > 0 else exc.strerror or str(exc)
    return StartError(f"cannot listen on {host}:{settings.port} ({names}): {reason.lower()}")


def serve(settings: Settings, flags: Collection[str] = ()) -> int:
    """Runs the hub until stopped: 0, or 1 if it could not start. `flags`: see `check`."""
    logs.setup(settings.log_level, settings.log_format, access=settings.access_log)
    for warning in stray_variables(os.environ):
        log.warning("%s", warning)
    try:
        saved = read_dev_keys() if unconfigured_keys(settings) else {}
    except ConfigError as exc:
        log.warning("development keys not reused: %s", exc)
        saved = {}
    settings, dev_keys = with_keys(settings, saved)
    check(settings, flags)
    if settings.uses_redis:
        log.info("broker: Redis (key prefix %r)", settings.key_prefix)
    else:
        log.warning(
            "no HUB_REDIS_URL: using the embedded in-memory broker "
            "(one process only; history is lost on restart)"
        )
    if dev_keys:
        _announce_dev_keys(settings, _keep_dev_keys(dev_keys, saved))
    _warn_demo_tokens(settings)
    if settings.workers > 1:
        log.info("%d workers on port %d", settings.workers, settings.port)
        return Supervisor(
            settings.workers,
            lambda number: _worker(settings, flags),
            settings.shutdown_timeout,
        ).run()
    return _run(settings, False, flags)


# Young collections less often: most of the hub's garbage is freed by reference counting,
# and each collection walks thousands of streams' objects (0.8 s of CPU over 10,000 streams
# opening and closing, 0.15 s so). The older generations keep their default ratios, so the
# cycles a closed stream leaves (its task, a cancellation's traceback) are still collected.
_GC_THRESHOLDS = (50_000, 10, 10)


def _tune_gc() -> None:
    """What start-up built lives as long as the process: never scanned by the collector."""
    gc.collect()  # start-up's own garbage is not frozen with it
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _run(settings: Settings, reuse_port: bool, flags: Collection[str]) -> int:
    try:
        with asyncio.Runner(loop_factory=lambda: event_loop(settings)) as runner:
            runner.run(_serve(settings, reuse_port))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        raise _cannot_listen(settings, flags, exc) from None  # taken since `check`
    log.info("stopped")
    return 0


def _worker(settings: Settings, flags: Collection[str]) -> int:
    """One worker's hub; what stops it starting is one log line (the supervisor counts it)."""
    try:
        return _run(settings, True, flags)
    except (ConfigError, StartError) as exc:
        log.error("cannot start: %s", exc)
        return 2 if isinstance(exc, ConfigError) else 1


async def _serve(settings: Settings, reuse_port: bool) -> None:
    """Serves until SIGTERM or SIGINT, then drains: streams end cleanly, requests finish."""
    server = HubServer(create_app(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start(settings.host, settings.port, reuse_port=reuse_port)
        log.info("listening on http://%s:%d", settings.host, settings.port)
        _tune_gc()
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
