"""The lean front: which requests it streams itself, which it hands to aiohttp, and that
both answer alike."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from hub.errors import MalformedHead
from hub.http import connection as connection_module
from hub.http import front as front_module
from hub.http.connection import Connection
from hub.http.front import Front
from hub.http.head import HeadReader, _served_here, refusal
from hub.logs import redact
from tests.support.hubs import HubClient, MakeHub


def _front(hub: HubClient) -> Front:
    return hub.client.server.front


def _streams(hub: HubClient) -> set[Connection]:
    """The connections the front streams events on now."""
    return {c for c in _front(hub).connections if c.streaming}


def _entry(entry_id: str) -> tuple[int, int]:
    """An entry id in the order the broker gave it (`<ms>-<seq>`: numbers, not text)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def _raw(hub: HubClient, *chunks: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(hub.client.host, hub.client.port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)
    return reader, writer


async def _head(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()


def _get(token: str, extra: str = "", version: str = "1.1") -> bytes:
    return (f"GET /events?token={token} HTTP/{version}\r\nHost: hub\r\n{extra}\r\n").encode()


async def _ok_from_aiohttp(reader: asyncio.StreamReader) -> None:
    """The next answer is a 200 from aiohttp (which names itself in Server:)."""
    head = await _head(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "aiohttp" in head


async def _receives(hub: HubClient, reader: asyncio.StreamReader, user: str) -> None:
    """A message published to `user` arrives on the raw stream."""
    await hub.send(f"to {user}", users=[user])
    body = b""
    async with asyncio.timeout(10):
        while f"data: to {user}\n".encode() not in body:
            body += await reader.read(4096)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_plain_stream_is_served_by_the_front_byte_by_byte(hub: HubClient) -> None:
    request = _get(hub.subscriber_token("fay"))
    reader, writer = await _raw(hub, *(request[i : i + 1] for i in range(len(request))))
    head = await _head(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/event-stream; charset=utf-8\r\n" in head
    assert "Transfer-Encoding: chunked\r\n" in head
    assert "aiohttp" not in head  # aiohttp names itself in Server:; the front does not
    await _until(lambda: len(_streams(hub)) == 1)
    await _receives(hub, reader, "fay")
    writer.close()
    await _until(lambda: not _streams(hub))  # ends with its connection
    # The slot was given back: the user can open max_streams_per_user streams again.
    streams = [await hub.subscribe("fay") for _ in range(hub.settings.max_streams_per_user)]
    for stream in streams:
        stream.close()


@pytest.mark.parametrize(
    ("extra", "version"),
    [
        ("", "1.0"),  # not HTTP/1.1
        ("Content-Length: 0\r\n", "1.1"),  # a body, even an empty one
    ],
)
async def test_what_the_front_does_not_read_itself_aiohttp_streams(
    hub: HubClient, extra: str, version: str
) -> None:
    request = _get(hub.subscriber_token("gus"), version=version)
    request = request[:-2] + extra.encode("latin-1") + b"\r\n"
    reader, writer = await _raw(hub, request)
    head = await _head(reader)
    assert head.startswith(f"HTTP/{version} 200 OK\r\n"), head
    assert "aiohttp" in head
    assert not _streams(hub)
    await _receives(hub, reader, "gus")
    writer.close()


async def test_refusals_are_aiohttps_problem_answers(hub: HubClient) -> None:
    reader, writer = await _raw(hub, _get("not-a-token"))
    head = await _head(reader)
    assert head.startswith("HTTP/1.1 401 Unauthorized\r\n")
    assert "Content-Type: application/problem+json" in head
    writer.close()


async def test_a_request_pipelined_behind_the_head_is_answered_by_aiohttp(
    hub: HubClient,
) -> None:
    token = hub.subscriber_token("hal")
    reader, writer = await _raw(hub, _get(token) + b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert (await _head(reader)).startswith("HTTP/1.1 200 OK\r\n")
    assert not _streams(hub)  # both requests went to aiohttp
    writer.close()


async def test_other_paths_go_to_aiohttp(hub: HubClient) -> None:
    reader, writer = await _raw(hub, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert (await _head(reader)).startswith("HTTP/1.1 200 OK\r\n")
    writer.close()


def _read(head: bytes) -> str:
    """What the front makes of a whole head: "refused" (answered by the front), "stream",
    "publish", or "passed on" (to aiohttp)."""
    try:
        parsed = HeadReader().feed(head + b"\r\n\r\n")
    except MalformedHead:
        return "refused"
    assert parsed is not None
    if refusal(parsed) is not None:
        return "refused"
    return _served_here(parsed) or "passed on"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /events HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b",
        b"GET /events HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2",
        b"GET /events HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"GET /events HTTP/1.1\r\nUpgrade: websocket",
        b"GET /eventsx HTTP/1.1",
        b"GET /events#x HTTP/1.1",
        b"POST /events HTTP/1.1",
        b"GET /events HTTP/1.1\r\nHost: a\r\nHost: b",
        b"GET /events HTTP/1.1\r\nX-Pad: " + b"x" * 9000,
        b"GET /events HTTP/1.1" + b"\r\nX: 1" * 129,
        b"GET http://hub/events HTTP/1.1",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json",  # no length
        b"POST /publish HTTP/1.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: 2",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: 2",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Origin: https://app.example",  # a browser's: CORS headers are aiohttp's
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Expect: 100-continue",
        b"POST /publish?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2",
        b"POST /publish HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2",
        b"PUT /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2",
    ],
)
def test_heads_the_front_passes_on(head: bytes) -> None:
    assert _read(head) == "passed on"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /events HTTP/1.1\r\nX-A: 1\r\n folded",
        b"GET /events HTTP/1.1\r\nBad Name: 1",
        b"GET /events HTTP/1.1\r\nX: a\x00b",
        b"GET /events HTTP/1.1\r\nCookie: a=\x01",
        b"GET /events?token=caf\xc3\xa9 HTTP/1.1",
        b"GET /events HTTP/1.1\nHost: hub",
        b"GET /events HTTP/2.0",
        b"GET /events HTTP/1.2",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: +2",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"content-length: 2",
        b"POST /publish HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked",
        b"POST /publish HTTP/1.1\r\nTransfer-Encoding: identity, chunked",
        b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"POST /publish HTTP/1.1\r\nTransfer-Encoding: gzip",
        b"CONNECT hub:80 HTTP/1.1",
    ],
)
def test_heads_the_front_refuses_itself(head: bytes) -> None:
    assert _read(head) == "refused"


def test_a_head_the_front_reads() -> None:
    parsed = HeadReader().feed(
        b"GET /events?topic=a&topic=b%2Bc&token=x+y HTTP/1.1\r\n"
        b"Host: hub\r\nlast-event-id:  abc \r\nCookie: hub_token=t1; other=2\r\n\r\n"
    )
    assert parsed is not None
    assert _served_here(parsed) == "stream"
    assert parsed.query.getall("topic") == ["a", "b+c"]
    assert parsed.query["token"] == "x y"  # as aiohttp decodes a query
    assert parsed.headers["Last-Event-ID"] == "abc"
    assert parsed.cookies == {"hub_token": "t1", "other": "2"}


def test_cookies_are_read_pair_by_pair() -> None:
    slow = '"' + "\\\\" * 4000 + '"'  # quadratic for http.cookies' quoted-value reader
    parsed = HeadReader().feed(
        b'GET /events HTTP/1.1\r\nCookie: a=1; junk; =x; hub_token="t 2"; b='
        + slow.encode()
        + b"; a=3\r\n\r\n"
    )
    assert parsed is not None
    assert parsed.cookies == {"a": "3", "hub_token": "t 2", "b": slow[1:-1]}


# -- publishes ------------------------------------------------------------------------------


def _post(
    token: str | None, body: bytes, extra: str = "", content_type: str = "application/json"
) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /publish HTTP/1.1\r\nHost: hub\r\n{auth}Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[str, Any]:
    head = await _head(reader)
    length = int(head.lower().split("content-length: ", 1)[1].split("\r\n", 1)[0])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head, json.loads(body)


def _message(user: str, data: str) -> bytes:
    return json.dumps({"users": [user], "data": data}).encode()


async def test_json_publishes_are_answered_by_the_front_on_one_connection(hub: HubClient) -> None:
    stream = await hub.subscribe("ida")
    token = hub.publisher_token()
    first = _post(token, _message("ida", "one"))
    reader, writer = await _raw(hub, *(first[i : i + 1] for i in range(len(first))))
    head, answer = await _answer(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: application/json\r\n" in head
    assert "aiohttp" not in head  # the front answered
    writer.write(_post(token, _message("ida", "two")))  # the same connection, kept alive
    _, again = await _answer(reader)
    assert [e.data for e in await stream.take(2)] == ["one", "two"]
    assert _entry(answer["ids"]["user:ida"]) < _entry(again["ids"]["user:ida"])
    writer.close()
    stream.close()


async def test_pipelined_publishes_are_answered_in_order_then_aiohttp_takes_over(
    hub: HubClient,
) -> None:
    token = hub.publisher_token()
    requests = [_post(token, _message("jo", str(n))) for n in range(3)]
    healthz = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
    reader, writer = await _raw(hub, b"".join(requests) + healthz)
    ids = [(await _answer(reader))[1]["ids"]["user:jo"] for _ in requests]
    assert ids == sorted(ids, key=_entry)
    assert len(set(ids)) == 3
    await _ok_from_aiohttp(reader)
    writer.close()


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("bad token", 401),
        ("malformed", 400),
        ("forbidden", 403),
        ("too big", 413),
        ("unknown field", 400),
        ("idempotency key", 400),
    ],
)
async def test_a_refused_publish_is_the_same_problem_from_the_front_and_aiohttp(
    hub: HubClient, case: str, status: int
) -> None:
    token: str | None = hub.publisher_token(["topic:news"])
    body, extra = json.dumps({"topics": ["news"], "data": "x"}).encode(), ""
    if case == "no token":
        token = None
    elif case == "bad token":
        token = "not-a-token"
    elif case == "malformed":
        body = b'{"topics": ['
    elif case == "forbidden":
        body = _message("kim", "x")
    elif case == "too big":
        body = json.dumps({"topics": ["news"], "data": "x" * 70000}).encode()
    elif case == "unknown field":
        body = json.dumps({"topics": ["news"], "data": "x", "colour": 1}).encode()
    elif case == "idempotency key":
        extra = f"Idempotency-Key: {'k' * 256}\r\n"
    answers = []
    # The same request as the front reads it, and with a media type parameter (aiohttp reads it).
    for content_type in ("application/json", "application/json; charset=utf-8"):
        reader, writer = await _raw(hub, _post(token, body, extra, content_type))
        head, problem = await _answer(reader)
        assert head.startswith(f"HTTP/1.1 {status} "), (content_type, head)
        assert "Content-Type: application/problem+json\r\n" in head
        authenticate = "WWW-Authenticate" in head
        answers.append((("aiohttp" in head), authenticate, problem))
        writer.close()
    (front_is_aiohttp, front_auth, front), (aiohttp_is_aiohttp, aiohttp_auth, behind) = answers
    assert not front_is_aiohttp
    assert aiohttp_is_aiohttp
    assert front == behind
    assert front_auth == aiohttp_auth == (status == 401)


async def test_a_body_over_the_limit_goes_to_aiohttp(make_hub: MakeHub) -> None:
    hub = await make_hub(max_body_bytes=1000, max_payload_bytes=500)
    reader, writer = await _raw(hub, _post(hub.publisher_token(), b"[" + b" " * 2000 + b"]"))
    head, problem = await _answer(reader)
    assert head.startswith("HTTP/1.1 413 ")
    assert problem["status"] == 413
    writer.close()


async def test_connection_close_is_honoured(hub: HubClient) -> None:
    request = _post(hub.publisher_token(), _message("lu", "x"), "Connection: close\r\n")
    reader, writer = await _raw(hub, request)
    head, _ = await _answer(reader)
    assert "Connection: close\r\n" in head
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the hub closed it
    writer.close()


async def test_a_publish_whose_client_leaves_still_happens(hub: HubClient) -> None:
    stream = await hub.subscribe("max")
    _, writer = await _raw(hub, _post(hub.publisher_token(), _message("max", "left")))
    writer.transport.abort()
    assert (await stream.next()).data == "left"
    stream.close()


async def test_an_idle_keep_alive_connection_is_closed(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "KEEP_ALIVE", 0.2)
    reader, writer = await _raw(hub, _post(hub.publisher_token(), _message("ned", "x")))
    await _answer(reader)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


def test_a_publish_head_the_front_reads() -> None:
    parsed = HeadReader().feed(
        b"POST /publish HTTP/1.1\r\nContent-Type: Application/JSON\r\nContent-Length: 17\r\n"
        b"Idempotency-Key: k1\r\n\r\n"
    )
    assert parsed is not None
    assert _served_here(parsed) == "publish"
    assert parsed.length == 17
    assert parsed.headers["Idempotency-Key"] == "k1"


async def _refused(reader: asyncio.StreamReader, status: int) -> None:
    """The front's answer to a request it refuses: a problem, then the connection closes."""
    head, problem = await _answer(reader)
    assert head.startswith(f"HTTP/1.1 {status} "), head
    assert "Content-Type: application/problem+json\r\n" in head
    assert "Connection: close\r\n" in head
    assert problem["status"] == status
    assert await asyncio.wait_for(reader.read(), 10) == b""


@pytest.fixture
def quick_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(front_module, "SWEEP", 0.1)


@pytest.mark.usefixtures("quick_deadlines")
@pytest.mark.parametrize("sent", [b"", b"GET /events HTTP/1.1\r\nHost: hub\r\n"])
async def test_a_head_not_complete_in_time_is_answered_408(hub: HubClient, sent: bytes) -> None:
    reader, writer = await _raw(hub, sent)
    await _refused(reader, 408)
    writer.close()


@pytest.mark.usefixtures("quick_deadlines")
async def test_a_partial_head_on_a_connection_aiohttp_serves_is_cut_off(hub: HubClient) -> None:
    reader, writer = await _raw(hub, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    head, _ = await _answer(reader)
    assert "aiohttp" in head
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")  # and then nothing
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, not held for an hour
    writer.close()


@pytest.mark.usefixtures("quick_deadlines")
async def test_a_head_after_a_connect_aiohttp_answered_is_still_watched(hub: HubClient) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
    connect = b"CONNECT hub:80 HTTP/1.1\r\nHost: hub\r\n\r\n"
    reader, writer = await _raw(hub, healthz + connect + b"GET /healthz HTTP/1.1\r\n")
    answers = await asyncio.wait_for(reader.read(), 10)  # closed, not held for an hour
    assert answers.count(b"HTTP/1.1 ") == 2  # healthz, then aiohttp's answer to CONNECT
    writer.close()


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET /events HTTP/1.1\nHost: hub\n\n", 400),  # bare LF line ends
        (b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /events?token=caf\xc3\xa9 HTTP/1.1\r\nHost: hub\r\n\r\n", 400),
        (b"GET /events HTTP/1.1\r\nHost: hub\r\nCookie: hub_token=a\x01b\r\n\r\n", 400),
        (b"GET /events HTTP/2.0\r\nHost: hub\r\n\r\n", 505),
        (b"GET /healthz HTTP/2.0\r\nHost: hub\r\n\r\n", 505),
        (b"CONNECT hub:80 HTTP/1.1\r\nHost: hub\r\n\r\n", 501),
        (
            b"POST /publish HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            501,
        ),
    ],
)
async def test_heads_the_front_refuses_are_answered_at_once(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch, request_: bytes, status: int
) -> None:
    monkeypatch.setattr(connection_module, "HEAD_TIMEOUT", 600.0)  # an answer is not the timeout's
    reader, writer = await _raw(hub, request_)
    await _refused(reader, status)
    writer.close()


async def _backed_up(
    hub: HubClient,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Transport]:
    """A publisher's connection, after one answer, whose answers back up at once (small
    buffers on both sides)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((hub.client.host, hub.client.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_post(None, b"{}"))
    await _answer(reader)
    (connection,) = _front(hub).connections
    transport = connection._transport
    assert transport is not None
    transport.set_write_buffer_limits(high=2048)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return reader, writer, transport


async def test_a_publisher_that_never_reads_its_answers_is_dropped(
    make_hub: MakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = await make_hub()
    monkeypatch.setattr(connection_module, "send_timeout", lambda settings: 0.3)
    monkeypatch.setattr(front_module, "SWEEP", 0.1)
    _reader, writer, transport = await _backed_up(hub)
    writer.write(_post(None, b"{}") * 2000)  # unauthorized: each answer is a problem
    await _until(lambda: transport.is_closing())  # aborted, not kept for KEEP_ALIVE
    writer.close()


async def test_pipelined_publishes_to_a_client_slow_to_read_are_all_answered(
    hub: HubClient,
) -> None:
    reader, writer, _transport = await _backed_up(hub)
    count = 2000
    writer.write(_post(None, b"{}") * count)  # unauthorized: each answer is a problem
    await asyncio.sleep(0.5)  # the client reads nothing meanwhile
    statuses = [(await _answer(reader))[1]["status"] for _ in range(count)]
    assert statuses == [401] * count
    writer.write(_post(hub.publisher_token(), _message("pam", "after")))  # still served
    head, answer = await _answer(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "user:pam" in answer["ids"]
    writer.close()


async def test_a_compressed_publish_is_read_by_aiohttp(hub: HubClient) -> None:
    stream = await hub.subscribe("quin")
    body = gzip.compress(_message("quin", "zipped"))
    reader, writer = await _raw(
        hub, _post(hub.publisher_token(), body, "Content-Encoding: gzip\r\n")
    )
    head, _ = await _answer(reader)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert (await stream.next()).data == "zipped"
    writer.close()
    stream.close()


async def test_bodies_in_many_pieces_then_a_stream_on_the_same_connection(
    hub: HubClient,
) -> None:
    stream = await hub.subscribe("rex")
    token = hub.publisher_token()
    big = _message("rex", "y" * 50000)
    data = _post(token, big) + _post(token, _message("rex", "small"))
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    reader, writer = await _raw(hub, *pieces)
    for _ in range(2):
        head, _ = await _answer(reader)
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        assert "aiohttp" not in head
    assert [len(e.data) for e in await stream.take(2)] == [50000, 5]
    # A stream asked for after publishes is aiohttp's (the front streams fresh connections).
    writer.write(_get(hub.subscriber_token("rex")))
    await _ok_from_aiohttp(reader)
    writer.close()
    stream.close()


@pytest.mark.usefixtures("quick_deadlines")
async def test_a_partial_request_after_a_kept_alive_answer_is_answered_408(
    hub: HubClient,
) -> None:
    reader, writer = await _raw(hub, _post(hub.publisher_token(), _message("sal", "x")))
    await _answer(reader)
    request = _post(hub.publisher_token(), _message("sal", "y"))
    writer.write(request[:30])  # well before KEEP_ALIVE: the head timeout applies
    await _refused(reader, 408)
    writer.close()


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/events?token=abc", "/events?token=***"),
        ("/events?topic=a&token=abc&lastEventId=1", "/events?topic=a&token=***&lastEventId=1"),
        ("/events?%74oken=abc", "/events?%74oken=***"),  # the same key, percent-encoded
        ("/events?tok%65n=a&token=b", "/events?tok%65n=***&token=***"),
        ("/events?tokens=abc&xtoken=d", "/events?tokens=abc&xtoken=d"),
        ("/events", "/events"),
    ],
)
def test_tokens_never_reach_the_access_log(path: str, logged: str) -> None:
    assert redact(path) == logged
