"""No log line carries a credential: not the hub's, not aiohttp's, which quotes the line of
a request its parser refuses whole (a `?token=`, a cookie, a bearer token)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

import pytest
from aiohttp.http_exceptions import BadHttpMessage, InvalidHeader, LineTooLong

from hub.auth.verify import mint
from hub.logs import JsonFormatter, SecretFilter, TextFormatter, redact_text
from tests.conftest import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.hub_process import HubProcess


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    secret: str


def _jwt(user: str) -> str:
    return mint(SUBSCRIBER_KEY, "HS256", sub=user, topics=["*"])


def _opaque() -> str:
    return f"opaque{secrets.token_hex(12)}"


# Requests llhttp refuses; %s is where the credential goes.
REQUEST_LINES = [
    ("raw UTF-8 after a query token", b"GET /events?token=%s\xc3\xa9 HTTP/1.1\r\n"),
    ("a control byte in the query", b"GET /events?topic=t&token=%s\x01 HTTP/1.1\r\n"),
    ("a percent-encoded token name", b"GET /events?%%74oken=%s\xff HTTP/1.1\r\n"),
    ("a bare LF after a query token", b"GET /events?token=%s HTTP/1.1\n"),
]
HEADER_LINES = [
    ("a control byte after a bearer token", b"Authorization: Bearer %s\x01"),
    ("a NUL after a bearer token", b"Authorization: Bearer %s\x00"),
    ("a control byte in the token cookie", b"Cookie: hub_token=%s\x01"),
    ("DEL in a cookie after the token", b"Cookie: a=b; hub_token=%s; c=\x7f"),
    ("a cookie line over aiohttp's limit", b"Cookie: hub_token=%s; pad=" + b"p" * 9000),
]


def refused_requests() -> list[Case]:
    """Each refused request twice: with a JWT, and with an opaque secret (no JWT shape)."""
    host = b"Host: hub\r\n"
    cases = []
    for name, line in REQUEST_LINES:
        for secret in (_jwt(name), _opaque()):
            cases.append(Case(name, line % secret.encode() + host + b"\r\n", secret))
    for name, header in HEADER_LINES:
        for secret in (_jwt(name), _opaque()):
            head = b"GET /events HTTP/1.1\r\n" + host + header % secret.encode()
            cases.append(Case(name, head + b"\r\n\r\n", secret))
    publisher = mint(PUBLISHER_KEY, "HS256", sub="leaky", publish=["*"])
    publish = (
        b"POST /publish HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\x01\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    cases.append(
        Case("a control byte after a publisher's token", publish % publisher.encode(), publisher)
    )
    return cases


async def _answer(host: str, port: int, request: bytes) -> tuple[int, str]:
    """The status and head of the answer to `request`, sent alone on a new connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        async with asyncio.timeout(20):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    finally:
        writer.close()
    status = int(head.split(" ", 2)[1])
    return status, head


def _leaks(log: str, secret: str) -> bool:
    """Whether `secret`, or the distinctive end of it (a JWT's signature), is in `log`."""
    return secret in log or secret[-16:] in log


async def refuse_all(host: str, port: int, cases: list[Case]) -> int:
    """Sends every case and checks each is refused with a 4xx; returns how many of the
    answers are aiohttp's own refusals (text/plain: the hub answers problem+json)."""
    by_aiohttp = 0
    for case in cases:
        status, head = await _answer(host, port, case.request)
        assert 400 <= status < 500, (case.name, head)
        by_aiohttp += "content-type: text/plain" in head.lower()
    return by_aiohttp


def check_log(log: str, cases: list[Case], by_aiohttp: int) -> None:
    for case in cases:
        assert not _leaks(log, case.secret), f"{case.name}: the secret is in the log\n{log}"
    # aiohttp logs each refusal it answers (with its traceback): those lines stay.
    assert log.count("Error handling request from 127.0.0.1") >= by_aiohttp, log
    if by_aiohttp:
        assert "***" in log


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_refused_requests_leave_no_credential_in_the_log(
    start_hub: StartHub, log_format: str
) -> None:
    hub = start_hub(
        {
            "HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
            "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
            "HUB_LOG_FORMAT": log_format,
            "HUB_LOG_LEVEL": "DEBUG",  # every line anyone logs, the parsers' included
        }
    )
    cases = refused_requests()
    by_aiohttp = await refuse_all("127.0.0.1", hub.port, cases)
    _stop(hub)
    check_log(hub.stderr.read_text(), cases, by_aiohttp)


def _stop(hub: HubProcess) -> None:
    """Ends the hub cleanly, so that everything it logged is in its file."""
    hub.process.terminate()
    hub.process.wait(timeout=30)


# The messages aiohttp's parsers raise, as they quote requests (the C parser quotes the
# line; the pure-Python one the header's value alone), with the secret each quotes.
_JWT = _jwt("quoted")
PARSER_MESSAGES = [
    (
        BadHttpMessage("Invalid header value char:\n\n  b'Cookie: hub_token=SECRET1q\\x01'\n  ^"),
        "SECRET1q",
    ),
    (
        BadHttpMessage(
            "Invalid char in url query:\n\n  b'GET /events?token=SECRET2q\\xc3 HTTP/1.1'"
        ),
        "SECRET2q",
    ),
    (InvalidHeader(b"Bearer SECRET3q\x00"), "SECRET3q"),
    (InvalidHeader(b"hub_token=SECRET4q\x00"), "SECRET4q"),
    (InvalidHeader(b'hub_token="SECRET5q"\x00'), "SECRET5q"),
    (LineTooLong(b"hub_token=SECRET6q; pad=ppp...", 8190), "SECRET6q"),
    (LineTooLong(b"/events?tok%65n=SECRET7qppp...", 8190), "SECRET7q"),
    (BadHttpMessage(f"Invalid header value char:\n\n  b'X-Token: {_JWT}\\x01'"), _JWT),
]


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
@pytest.mark.parametrize(("error", "secret"), PARSER_MESSAGES)
def test_the_filter_hides_what_aiohttp_quotes(
    formatter: logging.Formatter, error: BadHttpMessage, secret: str
) -> None:
    """In the message, its arguments and the exception's text, as aiohttp logs them."""
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling %s: %s", None, None
    )
    record.args = ("request", str(error))
    record.exc_info = (type(error), error, None)
    assert SecretFilter().filter(record)
    line = formatter.format(record)
    assert "Error handling request" in line
    assert secret not in line, line
    assert "***" in line


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET /events?token=abc&topic=t", "GET /events?token=***&topic=t"),
        ("GET /events?%74oken=abc", "GET /events?%74oken=***"),
        ('1.2.3.4 "GET /events?token=abc" 200', '1.2.3.4 "GET /events?token=***" 200'),
        ("Authorization: Bearer abc", "Authorization: ***"),
        ("{'Cookie': 'hub_token=abc; x=y'}", "{'Cookie': ***"),
        ("bearer abc def", "bearer *** def"),
        ("refresh_token=abc; next", "refresh_token=***; next"),
        ("rediss://hub:pa55@redis:6380/0 down", "rediss://hub:***@redis:6380/0 down"),
        ("redis://:pa55@redis/0", "redis://:***@redis/0"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("hub.broker.redis: version 3.14.5", "hub.broker.redis: version 3.14.5"),
        ("no credential here", "no credential here"),
    ],
)
def test_redact_text(text: str, hidden: str) -> None:
    assert redact_text(text) == hidden
