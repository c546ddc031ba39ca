"""Tokens at the edges: time claims that are not NumericDates, the leeway, a remembered token
held to `exp` as PyJWT counts it, and any string at all (undecodable header bytes included)
refused with a 401 problem, never a 500, on a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.auth.verify import Publisher, Subscriber, TokenVerifier
from hub.errors import Unauthorized
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, HubClient, MakeHub, StartHub
from tests.support.strategies import ANY_CHARACTER

HS_KEY = "a-key-for-token-edges-long-enough-for-hs512-" * 2
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_PUBLIC = (
    _RSA.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@dataclass(frozen=True)
class Kind:
    """One kind of verifier: which token, which algorithm (HS256 takes the quick path)."""

    name: str
    kind: str
    algorithm: str

    def verifier(self, leeway: float = 0.0) -> TokenVerifier:
        key = _RSA_PUBLIC if self.algorithm == "RS256" else HS_KEY
        return TokenVerifier(key, self.algorithm, self.kind, leeway=leeway)

    def sign(self, payload: str) -> str:
        """`payload` (JSON text, taken as written) signed as this kind's issuer would."""
        key: Any = _RSA if self.algorithm == "RS256" else HS_KEY
        return jwt.PyJWS().encode(payload.encode(), key, algorithm=self.algorithm)

    def token(self, **claims: Any) -> str:
        return self.sign(json.dumps({"sub": "ann", "topics": ["*"], "publish": ["*"], **claims}))

    def check(self, verifier: TokenVerifier, token: str) -> Subscriber | Publisher:
        if self.kind == "subscriber":
            return verifier.subscriber(token)
        return verifier.publisher(token)


KINDS = [
    Kind("subscriber-HS256", "subscriber", "HS256"),
    Kind("publisher-HS256", "publisher", "HS256"),
    Kind("subscriber-RS256", "subscriber", "RS256"),
]
by_kind = pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])


def _clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Sets the verifier's clock (PyJWT's own is not moved: it only sees new tokens)."""

    def at(moment: float) -> None:
        monkeypatch.setattr("hub.auth.verify.time.time", lambda: moment)

    return at


# JSON text for a time claim, each accepted by PyJWT's int() or refused by it with the
# `OverflowError` that once escaped: none is a NumericDate.
_FUTURE, _PAST = int(time.time()) + 86_400, int(time.time()) - 60
NOT_NUMERIC_DATES: dict[str, Callable[[str], str]] = {
    "digits in a string": lambda name: json.dumps(str(_FUTURE if name == "exp" else _PAST)),
    "true": lambda name: "true",
    "null": lambda name: "null",
    "a list": lambda name: "[1]",
    "1e400 (infinity)": lambda name: "1e400",
    "-1e400": lambda name: "-1e400",
    "NaN": lambda name: "NaN",
    "an integer past a float's range": lambda name: ("-" if name != "exp" else "") + "9" * 400,
}


@by_kind
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", list(NOT_NUMERIC_DATES), ids=list(NOT_NUMERIC_DATES))
def test_a_time_claim_that_is_not_a_numeric_date_is_refused(
    kind: Kind, name: str, value: str
) -> None:
    token = kind.sign(f'{{"sub": "ann", "{name}": {NOT_NUMERIC_DATES[value](name)}}}')
    verifier = kind.verifier()
    for _ in range(2):  # and not remembered
        with pytest.raises(Unauthorized):
            kind.check(verifier, token)


@by_kind
def test_a_string_exp_is_not_honoured_once_then_forgotten(kind: Kind) -> None:
    """PyJWT takes `"exp": "<digits>"`; the hub refuses it rather than remember no expiry."""
    token = kind.token(exp=str(int(time.time()) + 60))
    with pytest.raises(Unauthorized, match="'exp' must be a NumericDate"):
        kind.check(kind.verifier(), token)


@by_kind
def test_numeric_dates_far_off_are_accepted(kind: Kind) -> None:
    """Large but finite JSON numbers are NumericDates (PyJWT compares their int())."""
    token = kind.sign('{"sub": "ann", "exp": 1e300, "nbf": -1e300, "iat": 1.5}')
    verifier = kind.verifier()
    assert kind.check(verifier, token) == kind.check(verifier, token)
    if kind.kind == "subscriber":
        assert verifier.subscriber(token).expires_at == int(1e300)


@by_kind
def test_a_remembered_token_expires_at_exp_as_pyjwt_counts_it(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyJWT compares `int(exp)`: a fractional `exp` expires at its whole second, remembered
    or not."""
    exp = int(time.time()) + 60
    token = kind.token(exp=exp + 0.7)
    verifier = kind.verifier()
    kind.check(verifier, token)
    at = _clock(monkeypatch)
    at(exp - 0.01)
    kind.check(verifier, token)
    at(exp + 0.3)
    with pytest.raises(Unauthorized, match="token expired"):
        kind.check(verifier, token)


@by_kind
def test_the_leeway_holds_for_new_and_remembered_tokens(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    late = kind.token(exp=now - 10)
    early = kind.token(nbf=now + 20, iat=now + 20)
    for token in (late, early):
        with pytest.raises(Unauthorized):
            kind.check(kind.verifier(), token)
    verifier = kind.verifier(leeway=30)
    for token in (late, early):
        kind.check(verifier, token)
    if kind.kind == "subscriber":
        assert verifier.subscriber(late).expires_at == now - 10 + 30
    at = _clock(monkeypatch)
    at(now - 10 + 29.9)
    kind.check(verifier, late)
    at(now - 10 + 30)  # exp <= now - leeway: expired, as PyJWT has it
    with pytest.raises(Unauthorized, match="token expired"):
        kind.check(verifier, late)


@by_kind
def test_a_token_issued_in_the_future_is_refused_as_such(kind: Kind) -> None:
    verifier = kind.verifier()
    with pytest.raises(Unauthorized, match=r"issued in the future \(iat\)"):
        kind.check(verifier, kind.token(iat=int(time.time()) + 600))
    with pytest.raises(Unauthorized, match=r"not yet valid \(nbf\)"):
        kind.check(verifier, kind.token(nbf=int(time.time()) + 600))


def _good(kind: Kind) -> str:
    return kind.token(exp=int(time.time()) + 600)


BAD_STRINGS: dict[str, Callable[[Kind], str]] = {
    "a lone surrogate (undecodable byte)": lambda k: "abc\udcff",
    "latin-1 text": lambda k: "abc\xff",
    "a good token and an undecodable byte": lambda k: _good(k) + "\udcff",
    "an undecodable byte inside a good token": lambda k: _good(k)[:20] + "\udcff" + _good(k)[21:],
    "a good token with a latin-1 letter": lambda k: _good(k)[:-1] + "é",
    "a high surrogate": lambda k: "\ud800.\ud800.\ud800",
    "NUL": lambda k: "\x00",
    "empty": lambda k: "",
    "dots": lambda k: "..",
}


@by_kind
@pytest.mark.parametrize("make", list(BAD_STRINGS.values()), ids=list(BAD_STRINGS))
def test_any_string_that_is_not_a_token_is_refused(kind: Kind, make: Callable[[Kind], str]) -> None:
    with pytest.raises(Unauthorized):
        kind.check(kind.verifier(), make(kind))


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(KINDS[:2]),
    text=st.text(ANY_CHARACTER, max_size=40),
    at=st.integers(0, 400),
)
def test_a_token_with_anything_in_it_is_a_token_or_unauthorized(
    kind: Kind, text: str, at: int
) -> None:
    good = _good(kind)
    verifier = kind.verifier()
    for token in (text, good[:at] + text + good[at:]):
        try:
            kind.check(verifier, token)
        except Unauthorized:
            pass
        else:
            # PyJWT (and so the verifier, held to it in test_quickjwt) also accepts a segment
            # with its exact base64 padding: the same token, spelt padded.
            assert token.replace("=", "") == good


# Through HTTP: raw bytes on a socket (a client library would refuse to send them).


async def _exchange(host: str, port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)  # Connection: close
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body


_BAD = b"abc\xff"
_BODY = b'{"users": ["ann"], "data": "x"}'
REQUESTS = {
    "events, bearer": b"GET /events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
    + _BAD
    + b"\r\nConnection: close\r\n\r\n",
    "events, cookie": b"GET /events HTTP/1.1\r\nHost: hub\r\nCookie: hub_token="
    + _BAD
    + b"\r\nConnection: close\r\n\r\n",
    "events, UTF-8 in a bearer": b"GET /events HTTP/1.1\r\nHost: hub\r\n"
    b"Authorization: Bearer \xc3\xa9t\xc3\xa9\r\nConnection: close\r\n\r\n",
    "events, %FF in ?token=": b"GET /events?token=abc%FF HTTP/1.1\r\nHost: hub\r\n"
    b"Connection: close\r\n\r\n",
    "publish, bearer": b"POST /publish HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
    + _BAD
    + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    % len(_BODY)
    + _BODY,
    "publish, cookie": b"POST /publish HTTP/1.1\r\nHost: hub\r\nCookie: hub_token="
    + _BAD
    + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    % len(_BODY)
    + _BODY,
}


def _is_401_problem(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 401, body
    assert headers["content-type"].startswith("application/problem+json"), headers
    assert json.loads(body)["status"] == 401


@pytest.mark.parametrize("request_bytes", list(REQUESTS.values()), ids=list(REQUESTS))
async def test_undecodable_bytes_in_a_token_are_a_401_problem(
    hub: HubClient, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = await _exchange(hub.client.host, hub.client.port, request_bytes)
    _is_401_problem(*answer)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_undecodable_bytes_in_a_token_are_a_401_from_hub_serve(
    start_hub: StartHub,
) -> None:
    hub = start_hub(
        {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
    )
    for request_bytes in REQUESTS.values():
        _is_401_problem(*await _exchange("127.0.0.1", hub.port, request_bytes))
    # Still serving, and nothing went wrong on the way.
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
    log = hub.stderr.read_text()
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log


async def test_string_time_claims_are_401_over_http(hub: HubClient) -> None:
    exp = str(int(time.time()) + 600)
    subscriber = jwt.encode({"sub": "ann", "exp": exp}, SUBSCRIBER_KEY, algorithm="HS256")
    answer = await hub.client.get("/events", headers={"Authorization": f"Bearer {subscriber}"})
    assert answer.status == 401
    assert answer.content_type == "application/problem+json"
    publisher = jwt.encode({"sub": "svc", "publish": ["*"], "nbf": "0"}, PUBLISHER_KEY)
    status, problem = await hub.post({"users": ["ann"], "data": "x"}, token=publisher)
    assert (status, problem["status"]) == (401, 401)


async def test_a_stream_in_the_leeway_is_accepted_then_closed_at_exp_plus_leeway(
    make_hub: MakeHub,
) -> None:
    hub = await make_hub(jwt_leeway=3.0)
    expired = int(time.time()) - 1  # past, but within the leeway
    token = jwt.encode({"sub": "ann", "exp": expired}, SUBSCRIBER_KEY, algorithm="HS256")
    stream = await hub.subscribe("ann", token=token)
    assert await stream.rest(timeout=20) == []  # ended by the hub, not by this test
    assert not stream.aborted
