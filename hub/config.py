"""Settings: defaults, overridden by a TOML file, overridden by `HUB_<NAME>` variables.

A bad value stops start-up with one line naming the setting where it came from
(`HUB_PORT`, `--port`, or the config file's `port`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from hub.errors import ConfigError
from hub.redisurl import parse_topology

ENV_PREFIX = "HUB_"
# HUB_* variables that are not settings: the command line's and the client example's.
OTHER_VARIABLES = frozenset(
    {"HUB_CONFIG", "HUB_URL", "HUB_SUBSCRIBER_TOKEN", "HUB_PUBLISHER_TOKEN"}
)
_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
# The longest request line the HTTP parser accepts (aiohttp's default is 8190).
MAX_REQUEST_LINE = 65536
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "tuple[str, ...]": "a comma-separated list",
}


class InvalidSetting(ConfigError):
    """A value `Settings` refuses; `load_settings` names it where it came from."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{env_name(name)}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Settings:
    # This machine only; the Docker image and the compose stacks set HUB_HOST=0.0.0.0.
    host: str = "127.0.0.1"
    port: int = 8080
    # Empty: the embedded in-memory broker (one process, history lost on restart).
    redis_url: str = ""
    # Replicas of each written primary that must hold a publish before it is answered (WAIT);
    # 0: answered once the primary has it (a failover may then lose it).
    replicas_ack: int = 0
    replicas_ack_timeout: float = 1.0
    key_prefix: str = "hub:"
    subscriber_jwt_key: str = ""
    subscriber_jwt_algorithm: str = "HS256"
    publisher_jwt_key: str = ""
    publisher_jwt_algorithm: str = "HS256"
    # An identity provider's JWKS URL instead of a key: the token's `kid` picks the key.
    subscriber_jwks_url: str = ""
    publisher_jwks_url: str = ""
    # When set, a token's `aud` must name one of these and its `iss` must be this;
    # when no audience is set, a token carrying an `aud` is accepted all the same.
    subscriber_jwt_audience: tuple[str, ...] = ()
    subscriber_jwt_issuer: str = ""
    publisher_jwt_audience: tuple[str, ...] = ()
    publisher_jwt_issuer: str = ""
    # Where a subscriber token holds the user id and the topic grants: dotted claim paths,
    # the longest claim name that exists tried first at each level.
    subscriber_claim_user: str = "sub"
    subscriber_claim_topics: str = "topics"
    # Seconds of clock skew allowed on `exp`, `nbf` and `iat` (an identity provider's clock).
    jwt_leeway: float = 0.0
    cookie_name: str = "hub_token"
    allow_query_token: bool = True
    cors_origins: tuple[str, ...] = ()
    heartbeat_interval: float = 15.0
    retry_ms: int = 3000
    history_max_len: int = 1000
    history_ttl: int = 86400
    history_meta_ttl: int = 30 * 86400
    history_page_size: int = 500
    idempotency_ttl: int = 86400
    max_payload_bytes: int = 65536
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch_size: int = 500
    max_targets: int = 1000
    max_topics_per_stream: int = 32
    # Open streams one user may hold on one hub process (tabs, devices); 0 = no limit.
    max_streams_per_user: int = 100
    # Longest accepted query string on GET /events.
    max_query_length: int = 8192
    stream_queue_size: int = 1000
    stream_queue_bytes: int = 8 * 1024 * 1024
    shutdown_timeout: float = 5.0
    # The demo page at GET /.
    demo_page: bool = True
    # Development only: POST /demo/login mints tokens for any user. Never in production.
    demo_tokens: bool = False
    # Hub processes on one port (SO_REUSEPORT); more than one needs Redis.
    workers: int = 1
    # uvloop's event loop (faster, leaner per connection); false: asyncio's own.
    uvloop: bool = True
    log_level: str = "INFO"
    # "text" for people, "json" for log pipelines (one object per line).
    log_format: str = "text"
    # One line per request (streams when they open). false: none, as behind a proxy that
    # logs them already: measured, a publish then costs 28 to 37% less hub CPU.
    access_log: bool = True
    # Mercure at /.well-known/mercure (README "Mercure"): one key for both kinds, or one each.
    mercure: bool = False
    mercure_jwt_key: str = ""
    mercure_publisher_jwt_key: str = ""
    mercure_subscriber_jwt_key: str = ""
    mercure_anonymous: bool = False  # subscribers without a token get public updates
    mercure_issuer: str = ""
    # The hub's resource identifier, which Mercure 1.0 tokens must name in `aud`.
    mercure_audience: str = ""
    # Durable Streams at /v1/stream/{name} (README "Durable Streams").
    durable_streams: bool = False
    durable_streams_anonymous: bool = False  # development only: anyone may do anything
    durable_streams_long_poll_timeout: float = 30.0

    def __post_init__(self) -> None:
        positive = (
            "heartbeat_interval",
            "history_max_len",
            "history_ttl",
            "history_page_size",
            "idempotency_ttl",
            "max_payload_bytes",
            "max_body_bytes",
            "max_batch_size",
            "max_targets",
            "max_topics_per_stream",
            "stream_queue_size",
            "stream_queue_bytes",
            "replicas_ack_timeout",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidSetting(name, "must be greater than 0")
        for name in (
            "replicas_ack",
            "max_streams_per_user",
            "jwt_leeway",
            "retry_ms",
            "shutdown_timeout",
        ):
            if getattr(self, name) < 0:
                raise InvalidSetting(name, "must not be negative")
        if not 0 < self.port < 65536:
            raise InvalidSetting("port", "must be a TCP port (1-65535)")
        if self.workers < 1:
            raise InvalidSetting("workers", "must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise InvalidSetting(
                "workers", "several workers share streams through Redis; set HUB_REDIS_URL"
            )
        if not 0 < self.max_query_length <= MAX_REQUEST_LINE:
            raise InvalidSetting("max_query_length", f"must be 1-{MAX_REQUEST_LINE}")
        if self.history_meta_ttl < self.history_ttl:
            raise InvalidSetting("history_meta_ttl", "must be at least HUB_HISTORY_TTL")
        if self.max_body_bytes < self.max_payload_bytes:
            raise InvalidSetting("max_body_bytes", "must be at least HUB_MAX_PAYLOAD_BYTES")
        if self.log_format not in ("text", "json"):
            raise InvalidSetting("log_format", "must be text or json")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise InvalidSetting("log_level", "must be DEBUG, INFO, WARNING or ERROR")
        if self.redis_url:
            try:
                parse_topology(self.redis_url)
            except ValueError as exc:
                raise InvalidSetting("redis_url", str(exc)) from None
        self._check_keys()
        _check_mercure(self)
        _check_durable_streams(self)

    def _check_keys(self) -> None:
        for kind in ("subscriber", "publisher"):
            self._check_provider(kind)
            algorithm = getattr(self, f"{kind}_jwt_algorithm")
            if algorithm not in _ALGORITHMS:
                raise InvalidSetting(
                    f"{kind}_jwt_algorithm", f"must be one of {', '.join(_ALGORITHMS)}"
                )
            key: str = getattr(self, f"{kind}_jwt_key")
            # RFC 7518 3.2: an HMAC key at least as long as the hash (PyJWT warns below it).
            needed = int(algorithm[2:]) // 8 if algorithm.startswith("HS") else 0
            if key and len(key.encode()) < needed:
                raise InvalidSetting(
                    f"{kind}_jwt_key",
                    f"an {algorithm} key must be at least {needed} bytes, not "
                    f"{len(key.encode())} (`openssl rand -hex 32` makes one of 64)",
                )
        if self.subscriber_jwt_key and self.subscriber_jwt_key == self.publisher_jwt_key:
            raise InvalidSetting(
                "publisher_jwt_key",
                "must differ from HUB_SUBSCRIBER_JWT_KEY "
                "(else whoever signs subscriber tokens can sign publisher tokens)",
            )

    def _check_provider(self, kind: str) -> None:
        url: str = getattr(self, f"{kind}_jwks_url")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidSetting(
                    f"{kind}_jwks_url", "must be an http(s) URL of a JWKS document"
                )
            if getattr(self, f"{kind}_jwt_key"):
                raise InvalidSetting(
                    f"{kind}_jwks_url",
                    f"set either {env_name(kind + '_jwt_key')} or this, not both",
                )
            if self.demo_tokens:
                raise InvalidSetting(
                    "demo_tokens",
                    f"needs {env_name(kind + '_jwt_key')}: the hub cannot sign tokens "
                    "that an identity provider issues",
                )
        if kind == "subscriber":
            for name in ("subscriber_claim_user", "subscriber_claim_topics"):
                path: str = getattr(self, name)
                if not path or path != path.strip():
                    raise InvalidSetting(name, "must be a claim name or a dotted path of them")

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)


def _check_durable_streams(settings: Settings) -> None:
    if settings.durable_streams_long_poll_timeout <= 0:
        raise InvalidSetting("durable_streams_long_poll_timeout", "must be greater than 0")


def _check_mercure(settings: Settings) -> None:
    if not settings.mercure:
        return
    if not (settings.mercure_publisher_jwt_key or settings.mercure_jwt_key):
        raise InvalidSetting(
            "mercure_jwt_key",
            "Mercure needs a key for publishers (or HUB_MERCURE_PUBLISHER_JWT_KEY)",
        )
    audience = settings.mercure_audience
    if audience and urlsplit(audience).scheme not in ("http", "https"):
        raise InvalidSetting(
            "mercure_audience",
            "must be the hub's URL, e.g. https://example.com/.well-known/mercure",
        )


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    """The `hub serve` option that sets `name`."""
    return "--" + name.replace("_", "-")


def setting_name(name: str, flags: Collection[str] = ()) -> str:
    """`--port` when the value came from that option (one of `flags`), else `HUB_PORT`."""
    return flag(name) if name in flags else env_name(name)


def stray_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each HUB_* variable that is no setting: misspelt, it would be ignored."""
    known = {env_name(f.name) for f in fields(Settings)} | OTHER_VARIABLES
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings


def _convert(kind: str, value: object, label: str) -> object:
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, bool | float):
                raise ValueError
            return int(str(value).strip())
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(str(value).strip())
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                raise ValueError
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError
    except ValueError:
        raise ConfigError(f"{label}: expected {_EXPECTED[kind]}, got {value!r}") from None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Defaults < TOML file < environment < explicit overrides (command-line flags)."""
    env = os.environ if environ is None else environ
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    values: dict[str, object] = {}
    labels: dict[str, str] = {}  # where a value came from, when not from HUB_<NAME>
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            table = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in table.items():
            if key not in kinds:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            labels[key] = f"config file {path}: {key}"
            values[key] = _convert(kinds[key], value, labels[key])
    for name, kind in kinds.items():
        raw = env.get(env_name(name))
        if raw is not None:
            labels.pop(name, None)
            values[name] = _convert(kind, raw, env_name(name))
    for name, value in overrides.items():
        if value is not None:
            labels[name] = flag(name)
            values[name] = _convert(kinds[name], value, labels[name])
    try:
        return dataclasses.replace(Settings(), **values)  # type: ignore[arg-type]
    except InvalidSetting as exc:
        if exc.name not in labels:
            raise
        raise ConfigError(f"{labels[exc.name]}: {exc.reason}") from None
