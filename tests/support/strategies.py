"""Hypothesis strategies the property tests share."""

from __future__ import annotations

from hypothesis import strategies as st

# Any code point, lone surrogates (bytes decoded with surrogateescape) and a token's own often.
ANY_CHARACTER = st.one_of(
    st.characters(codec=None, categories=None),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from("\udcff\xff\x00.-_=A"),
)
