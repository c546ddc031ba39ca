"""No log line carries a credential: not the hub's, not aiohttp's, which quotes the line of
a request its parser refuses whole (a `?token=`, a cookie, a bearer token)."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, InvalidHeader, LineTooLong

from hub.logs import ClientFaultFilter, JsonFormatter, SecretFilter, TextFormatter, redact_text
from tests.support.hub_process import HubProcess
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub
from tests.support.logcheck import (
    _jwt,
    check_log,
    refuse_all,
    refused_requests,
)


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
        (
            '"GET /.well-known/mercure?topic=a&authorization=abc&x=1" 200 0.1s',
            '"GET /.well-known/mercure?topic=a&authorization=***&x=1" 200 0.1s',
        ),
        ("GET /x?access_token=abc&y=2", "GET /x?access_token=***&y=2"),
    ],
)
def test_redact_text(text: str, hidden: str) -> None:
    assert redact_text(text) == hidden


def test_a_broken_request_body_is_one_warning_line_not_a_traceback() -> None:
    try:
        raise web.RequestPayloadError("400, message:\n  Can not decode content-encoding: gzip")
    except web.RequestPayloadError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", (), sys.exc_info()
        )
    assert ClientFaultFilter().filter(record)
    assert (record.levelname, record.exc_info, record.exc_text) == ("WARNING", None, None)
    assert record.getMessage() == (
        "dropped a connection whose body was broken: "
        "400, message: Can not decode content-encoding: gzip"
    )


def test_a_head_aiohttp_refuses_is_one_warning_line_not_a_traceback() -> None:
    try:
        raise LineTooLong(b"Bearer xyz", 8190)
    except LineTooLong:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request",
            (),
            sys.exc_info(),
        )
    assert ClientFaultFilter().filter(record)
    assert (record.levelname, record.exc_info, record.exc_text) == ("WARNING", None, None)
    assert record.getMessage().startswith("refused a malformed request: 400")
