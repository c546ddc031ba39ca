"""The development defaults: the hub listens on this machine only, and the keys `hub serve`
generates are saved (0600) for the command line and the next start, never the configured ones."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from hub.config import Settings
from hub.devkeys import read_dev_keys, with_dev_keys, write_dev_keys
from hub.errors import ConfigError
from hub.server import with_keys
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY

SAVED = {"subscriber_jwt_key": "s" * 64, "publisher_jwt_key": "p" * 64}


def test_the_default_host_is_this_machine_only() -> None:
    assert Settings().host == "127.0.0.1"


def test_saved_keys_are_the_users_alone_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / ".hub-dev-keys"
    write_dev_keys(SAVED, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "HUB_SUBSCRIBER_JWT_KEY=" + "s" * 64 in path.read_text().splitlines()
    assert read_dev_keys(path) == SAVED
    write_dev_keys({"publisher_jwt_key": "q" * 64}, path)  # replaced whole
    assert read_dev_keys(path) == {"publisher_jwt_key": "q" * 64}
    assert [p.name for p in tmp_path.iterdir()] == [".hub-dev-keys"]
    assert read_dev_keys(tmp_path / "none") == {}


def test_the_command_line_takes_saved_keys_only_for_keys_not_configured(tmp_path: Path) -> None:
    path = tmp_path / ".hub-dev-keys"
    write_dev_keys(SAVED, path)
    assert with_dev_keys(Settings(), path) == Settings(
        subscriber_jwt_key="s" * 64, publisher_jwt_key="p" * 64
    )
    configured = Settings(subscriber_jwt_key=SUBSCRIBER_KEY)
    assert with_dev_keys(configured, path) == Settings(
        subscriber_jwt_key=SUBSCRIBER_KEY, publisher_jwt_key="p" * 64
    )
    both = Settings(subscriber_jwt_key=SUBSCRIBER_KEY, publisher_jwt_key=PUBLISHER_KEY)
    assert with_dev_keys(both, tmp_path / "unreadable" / "x") == both  # not even read
    assert with_dev_keys(Settings(), tmp_path / "none") == Settings()


def test_a_saved_key_that_does_not_fit_is_named_with_its_file(tmp_path: Path) -> None:
    path = tmp_path / ".hub-dev-keys"
    path.write_text("HUB_SUBSCRIBER_JWT_KEY=short\n")
    with pytest.raises(ConfigError, match=r"\.hub-dev-keys: an HS256 key must be at least 32"):
        with_dev_keys(Settings(), path)


def test_serve_reuses_saved_keys_and_generates_what_does_not_fit() -> None:
    settings, keys = with_keys(Settings(), SAVED)
    assert keys == SAVED
    assert (settings.subscriber_jwt_key, settings.publisher_jwt_key) == ("s" * 64, "p" * 64)
    # Too short for HS512: new keys, long enough.
    hs512 = dataclasses.replace(
        Settings(), subscriber_jwt_algorithm="HS512", publisher_jwt_algorithm="HS512"
    )
    settings, keys = with_keys(hs512, {"subscriber_jwt_key": "s" * 40})
    assert set(keys) == {"subscriber_jwt_key", "publisher_jwt_key"}
    assert all(len(key) >= 64 for key in keys.values())
    assert keys["subscriber_jwt_key"] != "s" * 40
    # A configured key is never among the keys filled in (so never saved).
    configured = Settings(subscriber_jwt_key=SUBSCRIBER_KEY)
    settings, keys = with_keys(configured, SAVED)
    assert keys == {"publisher_jwt_key": "p" * 64}
    assert settings.subscriber_jwt_key == SUBSCRIBER_KEY
