"""Cursors: compact, URL-safe, complete, and strict about what they accept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import cursor
from hub.cursor import CursorError, Position


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_.@:-]{1,20}", fullmatch=True),
            st.integers(0, 2**60),
            st.integers(0, 2**60),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_round_trip(channels: list[tuple[str, int, int]]) -> None:
    parts = [cursor.encode_part(cursor.channel_tag(c), Position(e, o)) for c, e, o in channels]
    text = cursor.encode(parts)
    assert all(ch.isalnum() or ch in "._" for ch in text)
    decoded = cursor.decode(text)
    for name, epoch, offset in channels:
        assert decoded[cursor.channel_tag(name)] == Position(epoch, offset)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
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
