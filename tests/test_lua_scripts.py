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


def _args(fingerprint: str, *messages: tuple[str, str]) -> list[Any]:
    args: list[Any] = [100, 3600, 7200, 600, fingerprint, len(messages)]
    for event, data in messages:
        args += [1, event, data, "live"]
    return args


async def test_epoch_and_offsets(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    assert await publish(keys=["s", "m"] * 2, args=_args("", ("a", "1"), ("b", "2"))) == [
        b"new",
        b"1-0",
        b"2-0",
    ]
    epoch, top, rows = await history(keys=["s", "m"], args=[1, 10])
    assert int(epoch) > 0
    assert top == b"2"
    assert rows == [[b"2-0", [b"e", b"b", b"d", b"2"]]]
    assert await redis.ttl("s") > 0
    assert await redis.ttl("m") > await redis.ttl("s")


async def test_lost_meta_starts_a_new_epoch_over_a_fresh_stream(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    await publish(keys=["s", "m"], args=_args("", ("a", "old")))
    old_epoch = (await history(keys=["s", "m"], args=["", 0]))[0]
    await redis.delete("m")
    assert await publish(keys=["s", "m"], args=_args("", ("a", "new"))) == [b"new", b"1-0"]
    epoch, _, rows = await history(keys=["s", "m"], args=[0, 10])
    assert epoch != old_epoch
    assert rows == [[b"1-0", [b"e", b"a", b"d", b"new"]]]


async def test_wrong_key_type_fails_before_any_write(redis: Any) -> None:
    publish = _script(redis, "publish.lua")
    await redis.set("s2", "text")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await publish(
            keys=["s1", "m1", "s2", "m2"], args=[100, 60, 60, 60, "", 1, 2, "e", "d", "l1", "l2"]
        )
    assert await redis.exists("s1", "m1") == 0


async def test_idempotency_record(redis: Any) -> None:
    publish = _script(redis, "publish.lua")
    first = await publish(keys=["s", "m", "idem"], args=_args("fp", ("a", "x")))
    again = await publish(keys=["s", "m", "idem"], args=_args("fp", ("a", "x")))
    assert first == [b"new", b"1-0"]
    assert again == [b"dup", b"fp\n1-0"]
    assert await redis.xlen("s") == 1
