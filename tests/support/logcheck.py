"""Requests a hub must refuse, each carrying a credential, and the check that none of
those credentials reached the log."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY


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
    # aiohttp logs each refusal it answers: one warning line each, without a traceback.
    assert log.count("refused a malformed request: ") >= by_aiohttp, log
    assert "Traceback" not in log, log
    if by_aiohttp:
        assert "***" in log
