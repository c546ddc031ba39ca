"""The Lua scripts on their own, on fakeredis (fast); the Redis broker tests prove them on Redis."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ResponseError


def _script(redis: Any, name: str) -> Any:
    return redis.register_script(files("hub.broker").joinpath("lua", name).read_text())


@pytest.fixture
def redis() -> Any:
    return fakeredis.FakeAsyncRedis()


def _args(fingerprint: str, *channels: list[tuple[str, str]]) -> list[Any]:
    """ARGV for entries per channel (each channel's live channel is `live<n>`)."""
    args: list[Any] = [100, 3600, 7200, 600, fingerprint, "PUBLISH", len(channels)]
    for number, entries in enumerate(channels):
        args += [f"live{number}", len(entries)]
        for event, data in entries:
            args += [event, data]
    return args


def _fields(row: list[Any]) -> dict[bytes, bytes]:
    values = row[1]
    return dict(zip(values[::2], values[1::2], strict=True))


async def test_epoch_offsets_and_stamps(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    assert await publish(keys=["s", "m"], args=_args("", [("a", "1"), ("b", "2")])) == [
        b"new",
        b"1-0,2-0",
    ]
    epoch, top, rows = await history(keys=["s", "m"], args=[1, 10])
    assert int(epoch) > 0
    assert top == b"2"
    assert [row[0] for row in rows] == [b"2-0"]
    second = _fields(rows[0])
    assert (second[b"e"], second[b"d"]) == (b"b", b"2")
    assert int(second[b"t"]) > 0
    assert second[b"p"] == second[b"t"], "p is the stamp of the entry before"
    assert await redis.hget("m", "stamp") == second[b"t"]
    assert await redis.ttl("s") > 0
    assert await redis.ttl("m") > await redis.ttl("s")


async def test_lost_meta_starts_a_new_epoch_over_a_fresh_stream(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    await publish(keys=["s", "m"], args=_args("", [("a", "old")]))
    old_epoch = (await history(keys=["s", "m"], args=["", 0]))[0]
    await redis.delete("m")
    assert await publish(keys=["s", "m"], args=_args("", [("a", "new")])) == [b"new", b"1-0"]
    epoch, _, rows = await history(keys=["s", "m"], args=[0, 10])
    assert epoch != old_epoch
    assert [row[0] for row in rows] == [b"1-0"]
    assert _fields(rows[0])[b"d"] == b"new"
    assert _fields(rows[0])[b"p"] == b"0", "the first entry of an epoch follows nothing"


async def test_wrong_key_type_fails_before_any_write(redis: Any) -> None:
    publish = _script(redis, "publish.lua")
    await redis.set("s2", "text")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await publish(keys=["s1", "m1", "s2", "m2"], args=_args("", [("e", "d")], [("e", "d")]))
    assert await redis.exists("s1", "m1") == 0


async def test_idempotency_record_per_channel(redis: Any) -> None:
    publish = _script(redis, "publish.lua")
    first = await publish(keys=["s", "m", "i"], args=_args("fp", [("a", "x")]))
    assert first == [b"new", b"1-0"]
    # A retry that also names a channel the first attempt did not write: only that one is new.
    again = await publish(
        keys=["s", "m", "i", "s2", "m2", "i2"], args=_args("fp", [("a", "x")], [("a", "x")])
    )
    assert again == [b"dup", b"fp\n1-0", b"new", b"1-0"]
    assert await redis.xlen("s") == 1
    assert await redis.xlen("s2") == 1


async def test_a_key_reused_for_another_request_writes_nothing(redis: Any) -> None:
    publish = _script(redis, "publish.lua")
    await publish(keys=["s", "m", "i"], args=_args("fp", [("a", "x")]))
    other = await publish(
        keys=["s2", "m2", "i2", "s", "m", "i"], args=_args("other", [("a", "y")], [("a", "y")])
    )
    assert other == [b"conflict"]
    assert await redis.exists("s2", "m2", "i2") == 0
    assert await redis.xlen("s") == 1
