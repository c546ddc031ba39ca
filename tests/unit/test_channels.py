"""Grants are globs matched as `fnmatchcase` matches them; `*` grants everything."""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.channels import allowed

_piece = st.sampled_from(
    ["*", "?", "[ab]", "[!a]", "[", "]", "a", "b", ":", ".", "\\", "user:", "|"]
)
_patterns = st.lists(st.lists(_piece, max_size=5).map("".join), max_size=4).map(tuple)
_names = st.lists(st.sampled_from(["a", "b", "c", ":", ".", "[", "]", "*", "|", "\n"]), max_size=8)


@settings(max_examples=500)
@given(patterns=_patterns, name=_names.map("".join))
def test_a_name_is_allowed_as_fnmatchcase_allows_it(patterns: tuple[str, ...], name: str) -> None:
    assert allowed(name, patterns) == any(fnmatchcase(name, p) for p in patterns)


def test_no_grant_allows_nothing() -> None:
    assert not allowed("topic:news", ())
    assert not allowed("", ())
    assert allowed("topic:news", ("topic:*",))
    assert not allowed("topic:news", ("Topic:*", "user:*"))
    assert allowed("", ("*",))
    assert allowed("topic:a\nb", ("x", "*"))
