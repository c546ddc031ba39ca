"""Mercure at /.well-known/mercure, on every broker: publishing, selecting topics, private
updates, exact resume from any id, tokens of both generations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.hubs import EVERY_BROKER, MakeHub
from tests.support.mercure import (
    PUBLISH_ALL,
    MercureClient,
    classic_token,
    detail,
    mercure_settings,
    modern_token,
)
from tests.support.sse_client import SSEStream, datas, told

BOOKS = "https://example.com/books/{id}"


@pytest.fixture(params=EVERY_BROKER)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every behaviour here holds on every broker and Redis topology."""
    return str(request.param)


MakeMercure = Callable[..., Awaitable[MercureClient]]


@pytest.fixture
async def make_mercure(make_hub: MakeHub) -> AsyncIterator[MakeMercure]:
    """A Mercure hub with these settings and a client of it (its streams closed after)."""
    clients: list[MercureClient] = []

    async def make(**overrides: Any) -> MercureClient:
        hub = await make_hub(**mercure_settings(**overrides))
        clients.append(MercureClient(hub.client.session, (hub.client.host, hub.client.port)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def mercure(make_mercure: MakeMercure) -> MercureClient:
    return await make_mercure()


async def test_an_update_reaches_every_subscriber_that_selects_it_once(
    mercure: MercureClient,
) -> None:
    exact = await mercure.subscribe("https://example.com/books/1")
    template = await mercure.subscribe(BOOKS)
    # Three matchers that all match: still one delivery.
    every = await mercure.subscribe("*", BOOKS, "https://example.com/books/1")
    other = await mercure.subscribe("https://example.com/authors/{id}")
    status, first = await mercure.publish("https://example.com/books/1", "one")
    assert status == 200
    status, second = await mercure.publish("https://example.com/books/2", "two")
    assert status == 200
    status, third = await mercure.publish("https://example.com/authors/7", "three")
    assert status == 200
    assert [(e.id, e.data) for e in await exact.take(1)] == [(first, "one")]
    assert [(e.id, e.data) for e in await template.take(2)] == [(first, "one"), (second, "two")]
    assert datas(await every.take(3)) == ["one", "two", "three"]
    assert [(e.id, e.data) for e in await other.take(1)] == [(third, "three")]
    # Nothing more for the exact subscriber: the next event is a later update.
    await mercure.publish("https://example.com/books/1", "four")
    assert datas(await exact.take(1)) == ["four"]


async def test_the_publisher_id_type_and_retry_go_out_as_sse_fields(
    mercure: MercureClient,
) -> None:
    stream = await mercure.subscribe("*")
    status, answer = await mercure.publish(
        "urn:example:a", "line 1\nline 2", id="urn:uuid:1", type="book.updated", retry="1234"
    )
    assert (status, answer) == (200, "urn:uuid:1")
    [event] = await stream.take(1)
    assert (event.id, event.event, event.data) == ("urn:uuid:1", "book.updated", "line 1\nline 2")
    assert stream.retry == 1234


async def test_alternate_topics_match_and_one_delivery_is_made(mercure: MercureClient) -> None:
    canonical = await mercure.subscribe("https://example.com/books/1")
    alternate = await mercure.subscribe("https://example.com/books/1.jsonld")
    both = await mercure.subscribe(
        "https://example.com/books/1", "https://example.com/books/1.jsonld"
    )
    await mercure.publish(
        ["https://example.com/books/1", "https://example.com/books/1.jsonld"], "x"
    )
    await mercure.publish("https://example.com/books/1", "y")
    assert datas(await canonical.take(2)) == ["x", "y"]
    assert datas(await alternate.take(1)) == ["x"]
    assert datas(await both.take(2)) == ["x", "y"]


async def test_private_updates_reach_only_subscribers_whose_token_allows_a_topic(
    mercure: MercureClient,
) -> None:
    anonymous = await mercure.subscribe(BOOKS)
    allowed = await mercure.subscribe(
        BOOKS, token=classic_token(subscribe=["https://example.com/books/1"])
    )
    templated = await mercure.subscribe(BOOKS, token=classic_token(subscribe=[BOOKS]))
    modern = await mercure.subscribe(
        BOOKS,
        token=modern_token(
            [detail(["subscribe"], ("https://example.com/books/:id", "URLPattern"))]
        ),
    )
    await mercure.publish("https://example.com/books/1", "secret 1", private="on")
    await mercure.publish("https://example.com/books/2", "secret 2", private="")
    await mercure.publish("https://example.com/books/3", "public")
    assert datas(await anonymous.take(1)) == ["public"]
    assert datas(await allowed.take(2)) == ["secret 1", "public"]
    assert datas(await templated.take(3)) == ["secret 1", "secret 2", "public"]
    assert datas(await modern.take(3)) == ["secret 1", "secret 2", "public"]


async def test_a_private_id_is_unknown_to_whoever_may_not_read_it(mercure: MercureClient) -> None:
    _, public = await mercure.publish("urn:p", "public")
    _, private = await mercure.publish("urn:p", "private", private="on", id="secret-1")
    _, generated = await mercure.publish("urn:p", "private too", private="on")
    await mercure.publish("urn:p", "after")
    for last in (private, generated, "never-sent"):
        status, stream, headers = await mercure.open([("topic", "urn:p")], last_event_id=last)
        assert status == 200
        assert isinstance(stream, SSEStream)
        # Alike whether it exists or not: the header, and a reset from now.
        assert headers["Last-Event-ID"] == "earliest"
        await mercure.publish("urn:p", f"new after {last}")
        assert told(await stream.next())[1]["reason"] == "unknown_cursor"
        assert datas(await stream.take(1)) == [f"new after {last}"]
    granted = classic_token(subscribe=["urn:p"])
    status, stream, headers = await mercure.open(
        [("topic", "urn:p")], last_event_id=private, token=granted
    )
    assert isinstance(stream, SSEStream)
    assert headers["Last-Event-ID"] == private
    assert datas(await stream.take(2))[:2] == ["private too", "after"]
    assert public


async def test_a_last_event_id_no_update_could_have_is_unknown_not_an_error(
    mercure: MercureClient,
) -> None:
    query = [("topic", "urn:t"), ("lastEventID", "a\x01b")]
    status, stream, headers = await mercure.open(query)
    assert status == 200
    assert headers["Last-Event-ID"] == "earliest"
    assert isinstance(stream, SSEStream)


async def test_resume_from_any_id_is_exact_across_topics(mercure: MercureClient) -> None:
    stream = await mercure.subscribe("https://example.com/a", BOOKS)
    await mercure.publish("https://example.com/a", "1", id="first")
    await mercure.publish("https://example.com/books/1", "2")
    got = await stream.take(2)
    stream.close()
    for n in range(3, 7):
        topic = "https://example.com/a" if n % 2 else "https://example.com/books/9"
        await mercure.publish(topic, str(n))
        await mercure.publish("https://example.com/elsewhere", "not selected")
    # From the publisher's id, and from a generated one: exactly what came after each.
    for last, expected in (
        (got[0].id, ["2", "3", "4", "5", "6"]),
        (got[1].id, ["3", "4", "5", "6"]),
    ):
        status, again, headers = await mercure.open(
            [("topic", "https://example.com/a"), ("topic", BOOKS)], last_event_id=last
        )
        assert isinstance(again, SSEStream)
        assert status == 200
        assert headers["Last-Event-ID"] == headers["Mercure-Last-Event-ID"] == last
        assert datas(await again.take(len(expected))) == expected
        await mercure.publish("https://example.com/a", "live")
        assert datas(await again.take(1)) == ["live"]
        again.close()
        expected.append("live")


async def test_resume_by_query_parameters_and_earliest(mercure: MercureClient) -> None:
    _, first = await mercure.publish("urn:t", "a")
    await mercure.publish("urn:t", "b")
    for name in ("lastEventID", "last_event_id"):
        status, stream, headers = await mercure.open([("topic", "urn:t"), (name, first)])
        assert isinstance(stream, SSEStream)
        assert status == 200
        assert headers["Last-Event-ID"] == first
        assert datas(await stream.take(1)) == ["b"]
    status, stream, headers = await mercure.open([("topic", "urn:t"), ("lastEventID", "earliest")])
    assert isinstance(stream, SSEStream)
    assert headers["Last-Event-ID"] == "earliest"
    assert datas(await stream.take(2)) == ["a", "b"]


async def test_an_unknown_id_says_earliest_and_resets_in_band(mercure: MercureClient) -> None:
    await mercure.publish("urn:t", "before")
    status, stream, headers = await mercure.open([("topic", "urn:t")], last_event_id="never-sent")
    assert isinstance(stream, SSEStream)
    assert status == 200
    assert headers["Last-Event-ID"] == headers["Mercure-Last-Event-ID"] == "earliest"
    await mercure.publish("urn:t", "after")
    reset = await stream.next()
    assert told(reset) == (
        "hub.reset",
        {"reason": "unknown_cursor", "channels": ["mercure:updates"]},
    )
    assert datas(await stream.take(1)) == ["after"]


async def test_a_trimmed_id_says_earliest_and_replays_what_is_left(
    make_mercure: MakeMercure,
) -> None:
    mercure = await make_mercure(history_max_len=3)
    _, first = await mercure.publish("urn:t", "0", id="zero")
    for n in range(1, 250):  # Redis trims whole nodes of 100 entries (MAXLEN ~)
        await mercure.publish("urn:t", str(n))
    _, stream, headers = await mercure.open([("topic", "urn:t")], last_event_id=first)
    assert isinstance(stream, SSEStream)
    assert headers["Last-Event-ID"] == "earliest"
    name, told_data = told(await stream.next())
    assert (name, told_data["reason"]) == ("hub.reset", "history_trimmed")
    # What is left comes in order, and the trimmed first is not in it.
    rest = [int(e.data) for e in await stream.take(3)]
    assert rest[0] > 0
    assert rest == list(range(rest[0], rest[0] + 3))


async def test_the_same_id_again_is_deduplicated_and_another_update_with_it_refused(
    mercure: MercureClient,
) -> None:
    stream = await mercure.subscribe("urn:t")
    assert await mercure.publish("urn:t", "x", id="once") == (200, "once")
    assert await mercure.publish("urn:t", "x", id="once") == (200, "once")
    status, problem = await mercure.publish("urn:t", "y", id="once")
    assert status == 409
    assert "another update" in problem
    await mercure.publish("urn:t", "z")
    assert datas(await stream.take(2)) == ["x", "z"]


async def test_publishing_needs_a_token_covering_every_topic(mercure: MercureClient) -> None:
    narrow = classic_token(publish=["https://example.com/books/{id}"])
    assert (await mercure.publish("https://example.com/books/1", "ok", token=narrow))[0] == 200
    status, _ = await mercure.publish(
        ["https://example.com/books/1", "https://example.com/authors/1"], "no", token=narrow
    )
    assert status == 403
    assert (await mercure.publish("urn:x", "no", token=classic_token(subscribe=["*"])))[0] == 403
    assert (await mercure.publish("urn:x", "no", token="not.a.token"))[0] == 401
    reserved = "/.well-known/mercure/subscriptions/x"
    assert (await mercure.publish(reserved, "forged"))[0] == 403
    modern = modern_token([detail(["publish"], ("https://example.com/books/:id", "URLPattern"))])
    assert (await mercure.publish("https://example.com/books/5", "ok", token=modern))[0] == 200
    assert (await mercure.publish("https://example.com/other", "no", token=modern))[0] == 403


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"id": "#mine"}, 400),
        ({"id": "a\nb"}, 400),
        ({"type": "a\rb"}, 400),
        ({"retry": "10s"}, 400),
        ({"data": "x" * 70000}, 413),
        ({"id": "tab\tin it"}, 400),
        ({"id": "trailing "}, 400),
        ({"id": "\x85next-line"}, 400),
        ({"topic": "https://example.com/a/../b"}, 400),
        ({"topic": "https://example.com/a/%2E%2e/b"}, 400),
        ({"topic": "https://example.com/a\\b"}, 400),
        ({"topic": "/x/%2e%2e/.well-known/mercure/subscriptions/a"}, 400),
        ({"topic": "/%2Ewell-known/mercure/x"}, 403),
        ({"topic": "HTTP://127.0.0.1/.well-known//mercure/q"}, 403),
    ],
)
async def test_malformed_updates_are_refused_and_publish_nothing(
    mercure: MercureClient, fields: dict[str, str], status: int
) -> None:
    stream = await mercure.subscribe("urn:t")
    extra = {name: value for name, value in fields.items() if name not in ("data", "topic")}
    topic = fields.get("topic", "urn:t")
    got, _ = await mercure.publish(topic, fields.get("data", "bad"), **extra)
    assert got == status
    await mercure.publish("urn:t", "good")
    assert datas(await stream.take(1)) == ["good"]


async def test_tokens_from_header_query_and_cookies(mercure: MercureClient) -> None:
    private = classic_token(subscribe=["urn:p"])
    by_query = await mercure.open([("topic", "urn:p"), ("authorization", private)])
    by_cookie = await mercure.open([("topic", "urn:p")], cookies={"mercureAuthorization": private})
    modern = modern_token([detail(["subscribe"], "urn:p")])
    by_secure_cookie = await mercure.open(
        [("topic", "urn:p")], cookies={"__Secure-mercure_access_token": modern}
    )
    await mercure.publish("urn:p", "private", private="on")
    for status, stream, _ in (by_query, by_cookie, by_secure_cookie):
        assert isinstance(stream, SSEStream)
        assert status == 200
        assert datas(await stream.take(1)) == ["private"]
    # A 1.0 token is never taken from the URL.
    status, _, headers = await mercure.open([("topic", "urn:p"), ("authorization", modern)])
    assert status == 401
    assert "invalid_request" in headers["WWW-Authenticate"]


async def test_bad_tokens_get_rfc_6750_errors(make_mercure: MakeMercure) -> None:
    mercure = await make_mercure(mercure_anonymous=False)
    status, _, headers = await mercure.open([("topic", "urn:t")])
    assert status == 401
    assert "error=" not in headers["WWW-Authenticate"]
    for token in (
        classic_token(subscribe=["*"], key="another-key-0123456789abcdef012345"),
        classic_token(subscribe=["*"], exp=int(time.time()) - 5),
        modern_token(
            [detail(["subscribe"], "*")], audience="https://elsewhere/.well-known/mercure"
        ),
        modern_token([{"type": "mercure", "actions": ["read"], "topics": [{"match": "*"}]}]),
        modern_token([detail(["subscribe"], ("*", "Regex"))]),
    ):
        status, _, headers = await mercure.open([("topic", "urn:t")], token=token)
        assert status == 401
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("matchRegex", "x")],
        [("topic", "https://example.com/{unclosed")],
        [("match_urlpattern", "(((")],
        [("topic", "a\x01b")],
        [("topic", str(n)) for n in range(40)],
    ],
)
async def test_bad_selectors_are_a_400(
    mercure: MercureClient, params: list[tuple[str, str]]
) -> None:
    status, _, _ = await mercure.open(params)
    assert status == 400


async def test_mercure_10_matchers(mercure: MercureClient) -> None:
    status, stream, _ = await mercure.open(
        [("match", "urn:exact"), ("match_urlpattern", "https://example.com/books/:id")]
    )
    assert isinstance(stream, SSEStream)
    assert status == 200
    status, spelled, _ = await mercure.open([("matchURLPattern", "/books/:id")])
    assert isinstance(spelled, SSEStream)
    assert status == 200
    for topic in ("urn:exact", "https://example.com/books/3", "https://example.com/books/3/x"):
        await mercure.publish(topic, topic)
    await mercure.publish("http://127.0.0.1/books/4", "relative")
    assert datas(await stream.take(2)) == ["urn:exact", "https://example.com/books/3"]
    assert datas(await spelled.take(1)) == ["relative"]


async def test_the_stream_ends_when_the_token_expires(make_mercure: MakeMercure) -> None:
    mercure = await make_mercure(heartbeat_interval=0.2)
    token = classic_token(subscribe=["*"], exp=int(time.time()) + 2)
    stream = await mercure.subscribe("*", token=token)
    async with asyncio.timeout(15):
        assert await stream.rest(timeout=10) == []


async def test_a_body_is_asked_for_only_once_the_publisher_token_passes(
    mercure: MercureClient,
) -> None:
    for token, expected in (("not.a.token", b"HTTP/1.1 401 "), (PUBLISH_ALL, b"HTTP/1.1 100 ")):
        reader, writer = await asyncio.open_connection(*mercure.address)
        writer.write(
            (
                "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n"
                f"Expect: 100-continue\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
        assert head.startswith(expected), head


async def test_a_stream_the_client_leaves_has_its_access_line(
    mercure: MercureClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    stream = await mercure.subscribe("urn:leaving")
    stream.close()

    def logged() -> bool:
        return any(
            "GET /.well-known/mercure?topic=urn:leaving" in r.getMessage()
            and " 200 " in r.getMessage()
            for r in caplog.records
        )

    async with asyncio.timeout(10):
        while not logged():
            await asyncio.sleep(0.02)
