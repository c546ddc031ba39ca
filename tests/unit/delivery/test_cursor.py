"""Cursors: compact, URL-safe, complete, and strict about what they accept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.delivery import cursor
from hub.delivery.cursor import CursorError, Position


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True),
            st.integers(0, 2**60),
            st.integers(0, 2**60),
            st.integers(0, 36**6 - 1),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_round_trip(channels: list[tuple[str, int, int, int]]) -> None:
    parts = [
        cursor.encode_part(cursor.channel_tag(c), Position(e, o, s)) for c, e, o, s in channels
    ]
    text = cursor.encode(parts)
    assert all(ch.isalnum() or ch in "._" for ch in text)
    decoded = cursor.decode(text)
    for name, epoch, offset, stamp in channels:
        assert decoded[cursor.channel_tag(name)] == Position(epoch, offset, stamp)


def test_the_stamp_is_the_fourth_field_and_left_out_when_unknown() -> None:
    assert cursor.encode_part("tag", Position(36, 35, 36**6 - 1)) == "tag.10.z.zzzzzz"
    assert cursor.encode_part("tag", Position(36, 35)) == "tag.10.z"
    assert Position(1, 2).stamp == 0


def test_cursors_without_stamps_stay_readable() -> None:
    """Cursors handed out before stamps existed resume as before (the stamp unknown)."""
    assert cursor.decode("abc.1.2_def.3.4.5") == {
        "abc": Position(1, 2, 0),
        "def": Position(3, 4, 5),
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "a.1.1.",
        "a.1.1.zzzzzzz",  # stamps are below 36**6
        "a.1.1.-1",
        "A.1.1",
        "a.1.1__b.1.1",
        "a.1.1\n",
        "x" * 5000,
        "a.1.-1",
        "a.1.zzzzzzzzzzzzz",  # past 2**63: not an offset any stream id can hold
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(CursorError):
        cursor.decode(text)


def test_tags_are_short_and_distinct() -> None:
    tags = {cursor.channel_tag(f"user:{n}") for n in range(10000)}
    assert len(tags) == 10000
    assert max(len(t) for t in tags) <= 8
