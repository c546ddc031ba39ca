"""Settings: TOML file, HUB_* environment, and one-line errors naming the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import Settings, load_settings
from hub.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert (settings.port, settings.heartbeat_interval, settings.max_payload_bytes) == (
        8080,
        15.0,
        65536,
    )
    assert not settings.uses_redis


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('port = 9000\nheartbeat_interval = 5\ncors_origins = ["https://a.example"]\n')
    env = {
        "HUB_HEARTBEAT_INTERVAL": "2.5",
        "HUB_REDIS_URL": "redis://localhost:6399/0",
        "HUB_ALLOW_QUERY_TOKEN": "false",
        "HUB_CORS_ORIGINS": "https://x.example, https://y.example",
        "HUB_HISTORY_MAX_LEN": "50",
        "HUB_KEY_PREFIX": "app1:",
    }
    settings = load_settings(config, environ=env, port=9100)
    assert settings.port == 9100
    assert settings.heartbeat_interval == 2.5
    assert settings.redis_url == "redis://localhost:6399/0"
    assert settings.uses_redis
    assert settings.allow_query_token is False
    assert settings.cors_origins == ("https://x.example", "https://y.example")
    assert settings.history_max_len == 50
    assert settings.key_prefix == "app1:"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUB_HEARTBEAT_INTERVAL": "soon"}, "HUB_HEARTBEAT_INTERVAL"),
        ({"HUB_HEARTBEAT_INTERVAL": "0"}, "HUB_HEARTBEAT_INTERVAL"),
        ({"HUB_PORT": "70000"}, "HUB_PORT"),
        ({"HUB_ALLOW_QUERY_TOKEN": "maybe"}, "HUB_ALLOW_QUERY_TOKEN"),
        ({"HUB_REDIS_URL": "http://x"}, "HUB_REDIS_URL"),
        ({"HUB_MAX_PAYLOAD_BYTES": "1.5"}, "HUB_MAX_PAYLOAD_BYTES"),
        ({"HUB_SUBSCRIBER_JWT_ALGORITHM": "none"}, "HUB_SUBSCRIBER_JWT_ALGORITHM"),
        ({"HUB_HISTORY_TTL": "100", "HUB_HISTORY_META_TTL": "10"}, "HUB_HISTORY_META_TTL"),
        ({"HUB_WORKERS": "0"}, "HUB_WORKERS"),
        ({"HUB_WORKERS": "2"}, "HUB_WORKERS.*HUB_REDIS_URL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=env)


def test_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(config, environ={})
    config.write_text("port = \n")
    with pytest.raises(ConfigError, match=r"hub\.toml"):
        load_settings(config, environ={})
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_documented_example_config_loads() -> None:
    example = Path(__file__).parent.parent / "config" / "hub.toml"
    assert load_settings(example, environ={}) == Settings()


def test_serve_with_a_bad_setting_stops_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve"],
        env={"HUB_HEARTBEAT_INTERVAL": "often", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hub: bad setting: HUB_HEARTBEAT_INTERVAL: expected a float, got 'often'"
    ]
