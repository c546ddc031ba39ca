"""Settings: defaults, overridden by a TOML file, overridden by `HUB_<NAME>` variables.

A bad value stops start-up with one line naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from hub.errors import ConfigError

ENV_PREFIX = "HUB_"
_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
# The longest request line the HTTP parser accepts (aiohttp's default is 8190).
MAX_REQUEST_LINE = 65536
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    # Empty: the embedded in-memory broker (one process, history lost on restart).
    redis_url: str = ""
    key_prefix: str = "hub:"
    subscriber_jwt_key: str = ""
    subscriber_jwt_algorithm: str = "HS256"
    publisher_jwt_key: str = ""
    publisher_jwt_algorithm: str = "HS256"
    # Seconds of clock skew allowed on `exp` and `nbf` (an identity provider's clock).
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

    def __post_init__(self) -> None:
        positive = (
            "port",
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
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env(name)}: must be greater than 0")
        if not 0 < self.port < 65536:
            raise ConfigError(f"{_env('port')}: must be a TCP port (1-65535)")
        if self.workers < 1:
            raise ConfigError(f"{_env('workers')}: must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise ConfigError(
                f"{_env('workers')}: several workers share streams through Redis; set HUB_REDIS_URL"
            )
        if self.max_streams_per_user < 0:
            raise ConfigError(f"{_env('max_streams_per_user')}: must not be negative")
        if not 0 < self.max_query_length <= MAX_REQUEST_LINE:
            raise ConfigError(f"{_env('max_query_length')}: must be 1-{MAX_REQUEST_LINE}")
        if self.jwt_leeway < 0:
            raise ConfigError(f"{_env('jwt_leeway')}: must not be negative")
        if self.retry_ms < 0 or self.shutdown_timeout < 0:
            raise ConfigError("HUB_RETRY_MS and HUB_SHUTDOWN_TIMEOUT must not be negative")
        if self.history_meta_ttl < self.history_ttl:
            raise ConfigError(f"{_env('history_meta_ttl')}: must be at least HUB_HISTORY_TTL")
        for name in ("subscriber_jwt_algorithm", "publisher_jwt_algorithm"):
            if getattr(self, name) not in _ALGORITHMS:
                raise ConfigError(f"{_env(name)}: must be one of {', '.join(_ALGORITHMS)}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"{_env('log_format')}: must be text or json")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"{_env('log_level')}: must be DEBUG, INFO, WARNING or ERROR")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"{_env('redis_url')}: must start with redis://, rediss:// or unix://"
            )
        if self.max_body_bytes < self.max_payload_bytes:
            raise ConfigError(f"{_env('max_body_bytes')}: must be at least HUB_MAX_PAYLOAD_BYTES")

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _convert(name: str, kind: str, value: object, origin: str) -> object:
    where = f"{origin}: " if origin else ""
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
        expected = {"tuple[str, ...]": "a comma-separated list"}.get(kind, f"a {kind}")
        raise ConfigError(f"{where}{_env(name)}: expected {expected}, got {value!r}") from None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Defaults < TOML file < environment < explicit overrides (command-line flags)."""
    env = os.environ if environ is None else environ
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    values: dict[str, object] = {}
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
            values[key] = _convert(key, kinds[key], value, str(path))
    for name, kind in kinds.items():
        raw = env.get(_env(name))
        if raw is not None:
            values[name] = _convert(name, kind, raw, "")
    for name, value in overrides.items():
        if value is not None:
            values[name] = _convert(name, kinds[name], value, "")
    return dataclasses.replace(Settings(), **values)  # type: ignore[arg-type]
