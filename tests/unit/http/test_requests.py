"""`hub.http.head.RequestReader`: a connection's next request read from the bytes received
so far, and who serves it."""

from __future__ import annotations

import pytest

from hub.errors import MalformedHead, NotSupported, VersionNotSupported
from hub.http.head import MAX_HEAD, RequestReader

STREAM = b"GET /events?token=t HTTP/1.1\r\nHost: hub\r\n\r\n"
BODY = b'{"users": ["ann"], "data": 1}'
PUBLISH = (
    b"POST /publish HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


def test_a_head_arriving_byte_by_byte_is_read_once_whole() -> None:
    reader, buffer = RequestReader(), bytearray()
    for byte in STREAM[:-1]:
        buffer.append(byte)
        assert reader.read(buffer, 1000) is None
    buffer += STREAM[-1:]
    request = reader.read(buffer, 1000)
    assert request is not None
    assert request.by == "stream"
    assert request.head is not None
    assert request.head.path == "/events"
    assert request.size == len(STREAM)  # nothing after it: the stream may be the front's


def test_a_publish_waits_for_its_whole_body() -> None:
    reader = RequestReader()
    buffer = bytearray(PUBLISH + BODY[:5])
    waiting = reader.read(buffer, 1000)
    assert waiting is not None
    assert waiting.by == "body"  # the connection gives the body the head's deadline
    buffer += BODY[5:-1]
    assert reader.read(buffer, 1000) is None
    buffer += BODY[-1:]
    request = reader.read(buffer, 1000)
    assert request is not None
    assert (request.by, request.body, request.size) == ("publish", BODY, len(PUBLISH + BODY))


def test_pipelined_publishes_are_read_one_after_the_other() -> None:
    reader = RequestReader()
    buffer = bytearray((PUBLISH + BODY) * 2 + b"GET /healthz HTTP/1.1\r\n\r\n")
    for _ in range(2):
        request = reader.read(buffer, 1000)
        assert request is not None
        assert (request.by, request.body) == ("publish", BODY)
        del buffer[: request.size]  # as the connection does once it starts the answer
    request = reader.read(buffer, 1000)
    assert request is not None
    assert request.by == "aiohttp"


def test_a_body_over_the_limit_is_aiohttps_to_refuse() -> None:
    request = RequestReader().read(bytearray(PUBLISH), len(BODY) - 1)
    assert request is not None
    assert request.by == "aiohttp"


def test_a_head_longer_than_the_front_reads_is_aiohttps() -> None:
    reader = RequestReader()
    buffer = bytearray(b"GET /events HTTP/1.1\r\nX-Pad: " + b"x" * MAX_HEAD)
    request = reader.read(buffer, 1000)
    assert request is not None
    assert request.by == "aiohttp"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"GET /events HTTP/1.1\nHost: hub\n\n", MalformedHead),
        (b"GET /events HTTP/2.0\r\nHost: hub\r\n\r\n", VersionNotSupported),
        (b"CONNECT hub:80 HTTP/1.1\r\nHost: hub\r\n\r\n", NotSupported),
    ],
)
def test_a_head_the_front_refuses_raises_its_answer(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        RequestReader().read(bytearray(data), 1000)
