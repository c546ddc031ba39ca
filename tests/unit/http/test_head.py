"""The front reads request heads exactly as llhttp does, however the bytes arrive.

A differential property test: generated heads, well-formed and not, fed to the
front's `HeadReader` in arbitrary pieces, against one plain llhttp parse of the
whole request. The front must accept exactly what llhttp accepts, with the same
method, target, version and fields, and find the body where llhttp does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import httptools
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.errors import MalformedHead
from hub.http.head import Head, HeadReader, head_end


@dataclass
class _Reference:
    """What llhttp reports for the whole request, fed at once."""

    url: bytes = b""
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False
    body: bytes = b""
    method: bytes = b""
    version: str = ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_body(self, body: bytes) -> None:
        self.body += body


def _reference(data: bytes) -> _Reference:
    reference = _Reference()
    parser = httptools.HttpRequestParser(reference)
    # What was read before a refusal stands (a complete head, say).
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        parser.feed_data(data)
    if reference.complete:
        reference.method = parser.get_method()
        reference.version = parser.get_http_version()
    return reference


def _front(data: bytes, cuts: list[int]) -> Head | MalformedHead | None:
    """The front's reading, the bytes arriving in pieces cut at `cuts`."""
    reader = HeadReader()
    start = 0
    for end in [*sorted(set(cuts)), len(data)]:
        if end <= start:
            continue
        try:
            head = reader.feed(data[start:end])
        except MalformedHead as exc:
            return exc
        if head is not None:
            return head
        start = end
    return None


_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"OPTIONS", b"get", b"G T", b"PRI"])
_TARGETS = st.one_of(
    st.sampled_from([b"/events", b"/publish", b"/events?token=a.b.c&topic=x", b"*", b"http://h/"]),
    st.binary(min_size=1, max_size=12).map(lambda b: b"/" + b),
)
_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1", b""])
_NAMES = st.one_of(
    st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Cookie", b"X-A"]),
    st.binary(min_size=0, max_size=8),
)
_VALUES = st.one_of(
    st.sampled_from([b"1", b"chunked", b"identity, chunked", b" hub ", b"a\tb", b"caf\xc3\xa9"]),
    st.binary(max_size=10),
)
_ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    lead = draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
    line = draw(_METHODS) + b" " + draw(_TARGETS) + b" " + draw(_VERSIONS)
    lines = [line]
    for name, value in draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=5)):
        lines.append(name + b":" + draw(st.sampled_from([b"", b" ", b"  "])) + value)
    head = lead + b"".join(part + draw(_ENDS) for part in lines) + draw(_ENDS)
    return head + draw(st.binary(max_size=12))  # a body, the next request, or garbage


@settings(max_examples=600, deadline=None)
@given(data=_requests(), cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6))
@example(data=b"GET /events HTTP/1.1\r\nHost: hub\r\n\r\n", cuts=[5, 17])
@example(data=b"\r\n\r\nPOST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", cuts=[1])
@example(data=b"GET /events HTTP/1.1\nHost: hub\n\n", cuts=[])
def test_the_front_reads_heads_as_llhttp_does(data: bytes, cuts: list[int]) -> None:
    reference = _reference(data)
    read = _front(data, cuts)
    if not reference.complete:
        # llhttp refused the head or still waits for it: the front has no head either.
        assert not isinstance(read, Head)
        return
    assert isinstance(read, Head)
    assert read.method.encode() == reference.method
    assert read.target == reference.url
    assert read.version == reference.version
    assert read.fields == reference.fields
    # Fields as aiohttp would hand them to a handler: whitespace around a value dropped.
    expected = [
        (name.decode().lower(), value.strip(b" \t").decode("utf-8", "surrogateescape"))
        for name, value in reference.fields
    ]
    assert [(name.lower(), value) for name, value in read.headers.items()] == expected
    # The body starts where llhttp's does.
    if reference.body:
        start = head_end(data)
        assert data[start : start + len(reference.body)] == reference.body


def test_a_refused_head_is_refused_in_any_pieces() -> None:
    data = b"GET /events HTTP/1.1\r\nX: a\x01b\r\n\r\n"
    for cut in range(1, len(data)):
        assert isinstance(_front(data, [cut]), MalformedHead)
