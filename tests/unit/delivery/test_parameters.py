"""The JSON body of `POST /events`: what it may hold, and each refusal's wording."""

from __future__ import annotations

import pytest

from hub.delivery.parameters import NO_BODY, StreamBody, stream_body
from hub.errors import BadRequest


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b"", NO_BODY),
        (b" \r\n\t", NO_BODY),
        (b"{}", NO_BODY),
        (b'{"topics": []}', NO_BODY),
        (b'{"topics": ["news", "room:1"]}', StreamBody(("news", "room:1"))),
        (b'{"lastEventId": "abc"}', StreamBody((), "abc")),
        (b'{"lastEventId": ""}', NO_BODY),  # as an empty Last-Event-ID: no position
        (b'{"topics": ["a"], "lastEventId": "earliest"}', StreamBody(("a",), "earliest")),
    ],
)
def test_what_a_body_holds(raw: bytes, parsed: StreamBody) -> None:
    assert stream_body(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[]", "must be a JSON object"),
        (b'"news"', "must be a JSON object"),
        (b'{"topic": ["news"]}', "unknown member 'topic'"),
        (b'{"topics": "news"}', "topics must be a list of strings"),
        (b'{"topics": [1]}', "topics must be a list of strings"),
        (b'{"lastEventId": 5}', "lastEventId must be a string"),
        (b"[" * 100_000 + b"]" * 100_000, "the body is not JSON"),  # too deep to read
        (b'{"topics": ["news"], "topics": ["secret"]}', "names a member twice"),
    ],
)
def test_a_bad_body_is_refused_with_its_reason(raw: bytes, detail: str) -> None:
    with pytest.raises(BadRequest, match=detail):
        stream_body(raw)
