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
    epoch, top, anchor, rows = await history(keys=["s", "m"], args=[1, 10, 2])
    assert int(epoch) > 0
    assert top == b"2"
    assert [row[0] for row in rows] == [b"2-0"]
    second = _fields(rows[0])
    assert (second[b"e"], second[b"d"]) == (b"b", b"2")
    assert int(second[b"t"]) > 0
    assert second[b"p"] == second[b"t"], "p is the stamp of the entry before"
    assert anchor == second[b"t"], "the entry at `after` tells its stamp"
    assert await redis.hget("m", "stamp") == second[b"t"]
    assert await redis.ttl("s") > 0
    assert await redis.ttl("m") > await redis.ttl("s")


async def test_lost_meta_starts_a_new_epoch_over_a_fresh_stream(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    await publish(keys=["s", "m"], args=_args("", [("a", "old")]))
    old_epoch = (await history(keys=["s", "m"], args=["", 0, ""]))[0]
    await redis.delete("m")
    assert await publish(keys=["s", "m"], args=_args("", [("a", "new")])) == [b"new", b"1-0"]
    epoch, _, _, rows = await history(keys=["s", "m"], args=[0, 10, 1])
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


async def test_history_tells_the_anchor_where_it_can(redis: Any) -> None:
    """The stamp of the entry at `after`: its own `t`, the next entry's `p` once it is
    trimmed, the meta's stamp once the stream expired; '' when nothing tells it."""
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    await publish(keys=["s", "m"], args=_args("", [("e", "0")]))  # the channel and its epoch
    await redis.delete("s")
    # Entries as publish.lua writes them, with stamps of their own (one script call per
    # entry; the clock's microseconds cannot be relied on to differ between calls here).
    for n in range(1, 6):
        fields = {"e": "e", "d": str(n), "t": 1000 + n, "p": 999 + n if n > 1 else 0}
        await redis.xadd("s", fields, id=f"{n}-0")
    await redis.hset("m", mapping={"top": 5, "stamp": 1005})
    epoch = await redis.hget("m", "epoch")

    async def read(after: int | str, count: int) -> tuple[bytes, list[int]]:
        nxt = "" if after == "" else int(after) + 1
        got_epoch, top, anchor, rows = await history(keys=["s", "m"], args=[after, count, nxt])
        assert (got_epoch, top) == (epoch, b"5")
        return anchor, [int(row[0].split(b"-")[0]) for row in rows]

    assert await read(2, 2) == (b"1002", [3, 4])
    assert await read(2, 10) == (b"1002", [3, 4, 5])
    assert await read(5, 10) == (b"1005", [])
    assert await read("", 0) == (b"1005", []), "from now: the top's stamp"
    assert await read(0, 2) == (b"", [1, 2])
    assert await read(7, 10) == (b"", []), "past the top: nothing to tell"
    await redis.xtrim("s", maxlen=3, approximate=False)  # 1 and 2 trimmed
    assert await read(2, 2) == (b"1002", [3, 4]), "the next entry's p"
    assert await read(1, 2) == (b"", [3, 4]), "trimmed with its successor: unknown"
    await redis.delete("s")  # the stream expired, the meta (a longer TTL) not yet
    assert await read(5, 10) == (b"1005", [])
    assert await read(4, 10) == (b"", [])


async def test_history_anchor_after_a_real_publish_matches_the_live_stamp(redis: Any) -> None:
    publish, history = _script(redis, "publish.lua"), _script(redis, "history.lua")
    pubsub = redis.pubsub()
    await pubsub.subscribe("live0")
    await pubsub.get_message(timeout=1)
    await publish(keys=["s", "m"], args=_args("", [("a", "1")]))
    message = await pubsub.get_message(timeout=1)
    live_stamp = message["data"].split(b"\n")[2]
    assert (await history(keys=["s", "m"], args=[1, 10, 2]))[2] == live_stamp
    assert (await history(keys=["s", "m"], args=["", 0, ""]))[2] == live_stamp
    ((_, fields),) = await redis.xrange("s")
    assert fields[b"t"] == live_stamp


async def test_history_of_a_missing_channel(redis: Any) -> None:
    history = _script(redis, "history.lua")
    assert await history(keys=["s", "m"], args=[3, 10, 4]) == [b"", b"0", b"", []]
