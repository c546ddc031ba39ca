"""Settings: TOML file, HUB_* environment, and one-line errors naming the setting."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import Settings, load_settings, stray_variables
from hub.errors import ConfigError
from hub.redisurl import redis_options
from tests.support.paths import ROOT

LONG_KEY = "k" * 32


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


def _marked_for_production(text: str) -> set[str]:
    """Keys whose comment block says "production:" (the file's own convention)."""
    marked: set[str] = set()
    comment: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comment.append(line)
        elif "=" in line:
            if any("production:" in c for c in comment):
                marked.add(line.split("=", 1)[0].strip())
            comment = []
        else:
            comment = []
    return marked


def test_documented_example_config_loads() -> None:
    """config/hub.toml shows every default, except the keys it marks "production:"."""
    example = ROOT / "config" / "hub.toml"
    loaded = load_settings(example, environ={})
    defaults = Settings()
    differing = {
        f.name
        for f in dataclasses.fields(defaults)
        if getattr(loaded, f.name) != getattr(defaults, f.name)
    }
    assert differing == _marked_for_production(example.read_text())
    assert (loaded.host, loaded.demo_page) == ("0.0.0.0", False)


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
        "hub: bad setting: HUB_HEARTBEAT_INTERVAL: expected a number, got 'often'"
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HUB_PORT": "80a"}, "HUB_PORT: expected an integer, got '80a'"),
        ({"HUB_JWT_LEEWAY": "a bit"}, "HUB_JWT_LEEWAY: expected a number, got 'a bit'"),
        ({"HUB_UVLOOP": "maybe"}, "HUB_UVLOOP: expected true or false, got 'maybe'"),
    ],
)
def test_conversion_errors_say_what_was_expected_in_words(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value) == message


def test_errors_name_the_flag_or_file_entry_the_value_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, port=70000)
    assert str(error.value) == "--port: must be a TCP port (1-65535)"
    with pytest.raises(ConfigError, match=r"^--workers: several workers"):
        load_settings(environ={}, workers=2)
    with pytest.raises(ConfigError, match=r"^HUB_PORT: "):
        load_settings(environ={"HUB_PORT": "70000"})
    config = tmp_path / "hub.toml"
    config.write_text("port = 70000\n")
    with pytest.raises(ConfigError, match=r"^config file .*hub\.toml: port: must be a TCP port"):
        load_settings(config, environ={})
    # The environment overrides the file, and is named as such.
    with pytest.raises(ConfigError, match=r"^HUB_PORT: "):
        load_settings(config, environ={"HUB_PORT": "0"})


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:abc",
        "redis://h:99999",
        "redis://h:0",
        "redis://h/x",
        "redis://h/-1",
        "redis://h/0/1",
        "redis://h?db=x",
        "redis://[::1",
        "redis://[::1:6379/0",
        "unix://",
        "unix://run/redis.sock",
        "rediss://h?ssl_cert_reqs=sometimes",
    ],
)
def test_a_malformed_redis_url_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^HUB_REDIS_URL: "):
        load_settings(environ={"HUB_REDIS_URL": url})
    with pytest.raises(ValueError, match=r"\w"):
        redis_options(url)


def test_a_refused_redis_url_is_not_repeated_it_may_hold_a_password() -> None:
    for url in ("redis://u:hunter2@h:abc", "redis://:hunter2@[::1", "redis://u:hunter2@h/x"):
        with pytest.raises(ConfigError) as error:
            load_settings(environ={"HUB_REDIS_URL": url})
        assert "hunter2" not in str(error.value)


def test_well_formed_redis_urls_are_read() -> None:
    assert redis_options("redis://[::1]:6380/3") == {"host": "::1", "port": 6380, "db": 3}
    assert redis_options("redis://h:/?db=2") == {"host": "h", "port": 6379, "db": 2}
    assert redis_options("rediss://h?ssl_cert_reqs=NONE") == {
        "tls": True,
        "host": "h",
        "port": 6379,
        "ssl_cert_reqs": "NONE",
    }
    assert redis_options("unix://u@/run/redis.sock") == {"path": "/run/redis.sock", "username": "u"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HUB_SUBSCRIBER_JWT_KEY": "k" * 31},
            "HUB_SUBSCRIBER_JWT_KEY: an HS256 key must be at least 32 bytes, not 31",
        ),
        (
            {"HUB_PUBLISHER_JWT_KEY": "é" * 15},  # 30 bytes in UTF-8
            "HUB_PUBLISHER_JWT_KEY: an HS256 key must be at least 32 bytes, not 30",
        ),
        (
            {"HUB_PUBLISHER_JWT_ALGORITHM": "HS512", "HUB_PUBLISHER_JWT_KEY": "k" * 40},
            "HUB_PUBLISHER_JWT_KEY: an HS512 key must be at least 64 bytes, not 40",
        ),
        (
            {"HUB_SUBSCRIBER_JWT_KEY": LONG_KEY, "HUB_PUBLISHER_JWT_KEY": LONG_KEY},
            "HUB_PUBLISHER_JWT_KEY: must differ from HUB_SUBSCRIBER_JWT_KEY",
        ),
    ],
)
def test_short_or_shared_keys_are_refused_with_the_reason(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value).startswith(message)


def test_keys_long_enough_or_not_shared_are_accepted() -> None:
    settings = load_settings(
        environ={"HUB_SUBSCRIBER_JWT_KEY": LONG_KEY, "HUB_PUBLISHER_JWT_KEY": "p" * 32}
    )
    assert settings.subscriber_jwt_key == LONG_KEY
    # Public keys have no byte length rule here (auth checks them when it loads them).
    rsa = load_settings(
        environ={"HUB_SUBSCRIBER_JWT_ALGORITHM": "RS256", "HUB_SUBSCRIBER_JWT_KEY": "keys/s.pem"}
    )
    assert rsa.subscriber_jwt_key == "keys/s.pem"


def test_stray_hub_variables_are_named_with_the_closest_setting() -> None:
    environ = {
        "HUB_REDIS_ULR": "redis://h",
        "HUB_SUBSCRIBER_KEY": "x",
        "hub_port": "9000",
        "HUB_NOTHING_LIKE_IT_AT_ALL": "1",
        # Settings, and the variables the command line and the client example read.
        "HUB_PORT": "9000",
        "HUB_URL": "http://127.0.0.1:8080",
        "HUB_CONFIG": "hub.toml",
        "HUB_SUBSCRIBER_TOKEN": "t",
        "HUB_PUBLISHER_TOKEN": "t",
        "HOME": "/root",
    }
    assert stray_variables(environ) == [
        "HUB_NOTHING_LIKE_IT_AT_ALL is not a setting and is ignored",
        "HUB_REDIS_ULR is not a setting and is ignored; did you mean HUB_REDIS_URL?",
        "HUB_SUBSCRIBER_KEY is not a setting and is ignored; did you mean HUB_SUBSCRIBER_JWT_KEY?",
        "hub_port is not a setting and is ignored; did you mean HUB_PORT?",
    ]


def test_the_three_forms_of_the_redis_url() -> None:
    from hub.redisurl import parse_topology

    single = parse_topology("redis://h:6380/2")
    assert (single.kind, single.nodes) == ("single", ({"host": "h", "port": 6380, "db": 2},))
    cluster = parse_topology("rediss://u:p@a:7000,b:7001")
    assert cluster.kind == "cluster"
    assert [(n["host"], n["port"], n["password"], n["tls"]) for n in cluster.nodes] == [
        ("a", 7000, "p", True),
        ("b", 7001, "p", True),
    ]
    sentinel = parse_topology("rediss+sentinel://u:p@s1,s2:26380/main/3")
    assert sentinel.kind == "sentinel"
    assert sentinel.master == "main"
    assert [(n["host"], n["port"]) for n in sentinel.nodes] == [("s1", 26379), ("s2", 26380)]
    assert sentinel.data == {"tls": True, "db": 3, "username": "u", "password": "p"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://a:1,b:2/3", "only database 0"),
        ("redis://a:1,,b:2", "empty host"),
        ("unix://a,b", "redis:// or rediss://"),
        ("redis+sentinel://s1:26379", "master-name"),
        ("redis+sentinel://s1/m/1/x", "master-name"),
    ],
)
def test_a_bad_topology_url_is_a_bad_setting(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        Settings(redis_url=url)
    assert "HUB_REDIS_URL" in str(caught.value)


IDP = "https://idp.example/.well-known/jwks.json"


def test_identity_provider_settings_are_read() -> None:
    settings = load_settings(
        environ={
            "HUB_SUBSCRIBER_JWKS_URL": IDP,
            "HUB_PUBLISHER_JWKS_URL": "http://127.0.0.1:9999/jwks",
            "HUB_SUBSCRIBER_JWT_AUDIENCE": "api://hub, api://other",
            "HUB_SUBSCRIBER_JWT_ISSUER": "https://idp.example/",
            "HUB_PUBLISHER_JWT_AUDIENCE": "api://publish",
            "HUB_PUBLISHER_JWT_ISSUER": "https://idp.example/",
            "HUB_SUBSCRIBER_CLAIM_USER": "https://example.com/claims.uid",
            "HUB_SUBSCRIBER_CLAIM_TOPICS": "https://example.com/claims.topics",
        }
    )
    assert settings.subscriber_jwks_url == IDP
    assert settings.subscriber_jwt_audience == ("api://hub", "api://other")
    assert settings.publisher_jwt_audience == ("api://publish",)
    assert settings.subscriber_jwt_issuer == settings.publisher_jwt_issuer == "https://idp.example/"
    assert settings.subscriber_claim_user == "https://example.com/claims.uid"
    assert settings.subscriber_claim_topics == "https://example.com/claims.topics"
    defaults = Settings()
    assert (defaults.subscriber_claim_user, defaults.subscriber_claim_topics) == ("sub", "topics")
    assert defaults.subscriber_jwt_audience == defaults.publisher_jwt_audience == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HUB_SUBSCRIBER_JWKS_URL": "ftp://idp.example/jwks"},
            "HUB_SUBSCRIBER_JWKS_URL: must be an http(s) URL of a JWKS document",
        ),
        (
            {"HUB_PUBLISHER_JWKS_URL": "idp.example/jwks"},
            "HUB_PUBLISHER_JWKS_URL: must be an http(s) URL of a JWKS document",
        ),
        (
            {"HUB_SUBSCRIBER_JWKS_URL": IDP, "HUB_SUBSCRIBER_JWT_KEY": LONG_KEY},
            "HUB_SUBSCRIBER_JWKS_URL: set either HUB_SUBSCRIBER_JWT_KEY or this, not both",
        ),
        (
            {"HUB_PUBLISHER_JWKS_URL": IDP, "HUB_DEMO_TOKENS": "true"},
            "HUB_DEMO_TOKENS: needs HUB_PUBLISHER_JWT_KEY: the hub cannot sign tokens that an "
            "identity provider issues",
        ),
        (
            {"HUB_SUBSCRIBER_CLAIM_USER": ""},
            "HUB_SUBSCRIBER_CLAIM_USER: must be a claim name or a dotted path of them",
        ),
        (
            {"HUB_SUBSCRIBER_CLAIM_TOPICS": " topics"},
            "HUB_SUBSCRIBER_CLAIM_TOPICS: must be a claim name or a dotted path of them",
        ),
    ],
)
def test_bad_identity_provider_settings_stop_with_one_line(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value) == message


def test_a_jwks_url_in_the_config_file_is_named_as_its_entry(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('subscriber_jwks_url = "file:///etc/passwd"\n')
    with pytest.raises(ConfigError, match=r"hub\.toml: subscriber_jwks_url: must be an http"):
        load_settings(config, environ={})
    config.write_text(f'publisher_jwks_url = "{IDP}"\npublisher_jwt_audience = ["a", "b"]\n')
    settings = load_settings(config, environ={})
    assert (settings.publisher_jwks_url, settings.publisher_jwt_audience) == (IDP, ("a", "b"))


def test_the_identity_provider_variables_are_settings_not_strays() -> None:
    names = [
        "HUB_SUBSCRIBER_JWKS_URL",
        "HUB_PUBLISHER_JWKS_URL",
        "HUB_SUBSCRIBER_JWT_AUDIENCE",
        "HUB_SUBSCRIBER_JWT_ISSUER",
        "HUB_PUBLISHER_JWT_AUDIENCE",
        "HUB_PUBLISHER_JWT_ISSUER",
        "HUB_SUBSCRIBER_CLAIM_USER",
        "HUB_SUBSCRIBER_CLAIM_TOPICS",
    ]
    assert stray_variables(dict.fromkeys(names, "x")) == []
    assert stray_variables({"HUB_SUBSCRIBER_JWKS_ULR": "x"}) == [
        "HUB_SUBSCRIBER_JWKS_ULR is not a setting and is ignored; "
        "did you mean HUB_SUBSCRIBER_JWKS_URL?"
    ]


def test_durable_streams_settings() -> None:
    with pytest.raises(ConfigError, match="HUB_DURABLE_STREAMS_LONG_POLL_TIMEOUT"):
        Settings(durable_streams_long_poll_timeout=0)
    assert Settings(durable_streams=True).durable_streams
