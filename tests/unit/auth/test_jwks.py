"""Tokens from an identity provider: keys from a JWKS served over real HTTP, picked by `kid`,
kept fresh without blocking the event loop, refreshed at a bounded rate, kept while the
provider is down; `aud`/`iss`; and the user id and topics read at dotted claim paths."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from hub.auth import jwks
from hub.auth.jwks import JwksKeys, KeyNotYetKnown
from hub.auth.verify import MISSING, TokenVerifier, claim_at
from hub.config import Settings
from hub.errors import Unauthorized
from hub.server import check, with_keys
from tests.support.hubs import SUBSCRIBER_KEY, MakeHub
from tests.support.jwks import JwksServer, SigningKey, ec_key, free_port, rsa_key

StartVerifier = Callable[..., Awaitable[TokenVerifier]]


@pytest.fixture
async def start_verifier() -> AsyncIterator[StartVerifier]:
    """A subscriber (or publisher) verifier on a JWKS URL, started; closed at teardown."""
    started: list[TokenVerifier] = []

    async def start(
        url: str,
        kind: str = "subscriber",
        *,
        min_interval: float = 0.2,
        refresh_interval: float = 300.0,
        start_wait: float = 5.0,
        unknown_wait: float = 5.0,
        **options: Any,
    ) -> TokenVerifier:
        keys = JwksKeys(
            url,
            kind,
            min_interval=min_interval,
            refresh_interval=refresh_interval,
            start_wait=start_wait,
            unknown_wait=unknown_wait,
            timeout=2.0,
        )
        verifier = TokenVerifier("", "HS256", kind, jwks=keys, **options)
        started.append(verifier)
        await verifier.start()
        return verifier

    yield start
    for verifier in started:
        await verifier.close()


async def eventually_accepted(verifier: TokenVerifier, token: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            verifier.subscriber(token)
            return
        except Unauthorized:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def eventually_refused(verifier: TokenVerifier, token: str, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            verifier.subscriber(token)
        except Unauthorized as exc:
            return exc.detail
        assert time.monotonic() < deadline, "still accepted"
        await asyncio.sleep(0.05)


def keys_of(verifier: TokenVerifier) -> JwksKeys:
    assert verifier.jwks is not None
    return verifier.jwks


async def test_the_kid_picks_the_key_rs256_and_es256(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    rs, es = rsa_key("rs-1"), ec_key("es-1")
    jwks_server.publish(rs, es)
    verifier = await start_verifier(jwks_server.url)
    assert verifier.subscriber(rs.token({"sub": "ann", "topics": ["news"]})).user == "ann"
    assert verifier.subscriber(es.token({"sub": "bob"})).user == "bob"
    # Another key under a known kid: the signature does not verify.
    impostor = SigningKey("rs-1", "RS256", rsa_key("impostor").private)
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        verifier.subscriber(impostor.token({"sub": "eve"}))
    # The EC key's token naming the RSA key's kid: not that key's algorithm.
    with pytest.raises(Unauthorized, match="alg value is not allowed"):
        verifier.subscriber(dataclasses.replace(es, kid="rs-1").token({"sub": "eve"}))
    # HS256 signed with the RSA public key (the algorithm-confusion attack).
    pem = rs.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # (PyJWT refuses to sign with a PEM as an HMAC key: forged by hand.)
    forged = _hs256_with_key(pem, {"sub": "eve"}, kid="rs-1")
    with pytest.raises(Unauthorized):
        verifier.subscriber(forged)
    # No kid while the provider has several keys: refused, and no fetch for it.
    fetches = keys_of(verifier).fetches
    with pytest.raises(Unauthorized, match="no 'kid'"):
        verifier.subscriber(jwt.encode({"sub": "x"}, rs.private, algorithm="RS256"))
    await asyncio.sleep(0.4)
    assert keys_of(verifier).fetches == fetches
    assert jwks_server.requests == 1


def _hs256_with_key(key: bytes, claims: dict[str, Any], kid: str) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = b64(hmac.digest(key, head + b"." + body, hashlib.sha256))
    return (head + b"." + body + b"." + signature).decode()


async def test_a_provider_with_one_key_may_leave_kid_out(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    es = ec_key()
    jwks_server.publish(es)
    verifier = await start_verifier(jwks_server.url)
    token = jwt.encode({"sub": "ann"}, es.private, algorithm="ES256")
    assert verifier.subscriber(token).user == "ann"


async def test_rotation_a_new_kid_is_fetched_and_a_removed_one_refused(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    old, new = rsa_key("old"), ec_key("new")
    jwks_server.publish(old)
    verifier = await start_verifier(jwks_server.url, min_interval=0.3)
    remembered = old.token({"sub": "ann"})
    assert verifier.subscriber(remembered).user == "ann"
    assert jwks_server.requests == 1

    # The provider adds a key and signs with it at once: refused until the refresh the
    # unknown kid asked for, then accepted.
    jwks_server.publish(old, new)
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.subscriber(new.token({"sub": "bob"}))
    await eventually_accepted(verifier, new.token({"sub": "bob"}))
    assert jwks_server.requests == 2
    assert verifier.subscriber(old.token({"sub": "ann"})).user == "ann"  # both known

    # The provider removes the old key: after the next refresh (asked for here by a token
    # with a kid nobody knows), neither a new token nor a remembered one is accepted.
    jwks_server.publish(new)
    assert verifier.subscriber(remembered).user == "ann"  # not refreshed yet
    with pytest.raises(Unauthorized):
        verifier.subscriber(rsa_key("nobody").token({"sub": "x"}))
    detail = await eventually_refused(verifier, old.token({"sub": "ann", "jti": "fresh"}))
    assert "unknown signing key" in detail
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.subscriber(remembered)
    assert verifier.subscriber(new.token({"sub": "bob"})).user == "bob"
    assert jwks_server.requests == 3


async def test_the_first_token_of_a_rotated_key_waits_for_the_refresh_and_is_accepted(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    """An EventSource refused with 401 never tries again: the request waits instead."""
    old, new = rsa_key("old"), ec_key("rotated")
    jwks_server.publish(old)
    verifier = await start_verifier(jwks_server.url, min_interval=0.3)
    jwks_server.publish(old, new)
    token = new.token({"sub": "bob"})
    subscriber = await verifier.fresh(lambda: verifier.subscriber(token))
    assert subscriber.user == "bob"
    assert jwks_server.requests == 2


async def test_unknown_kids_wait_a_bounded_time_and_share_one_fetch(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    jwks_server.publish(rsa_key("only"))
    # The last fetch was just now and the rate limit is long: no fetch comes in time.
    verifier = await start_verifier(jwks_server.url, min_interval=60.0, unknown_wait=0.5)
    tokens = [rsa_key(f"stranger-{i}").token({"sub": "eve"}) for i in range(3)] * 20

    async def attempt(token: str) -> str:
        try:
            await verifier.fresh(lambda: verifier.subscriber(token))
        except KeyNotYetKnown as exc:
            return exc.detail
        return "accepted"

    async with asyncio.timeout(30):  # sixty waits of 0.5 s at once, not one after another
        outcomes = await asyncio.gather(*map(attempt, tokens))
    assert set(outcomes) == {"invalid subscriber token: unknown signing key ('kid')"}
    assert jwks_server.requests == 1


async def test_a_provider_that_never_finishes_answering_holds_nothing_up(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    """urllib's timeout is per read: a trickling provider is cut by the fetch's own
    deadline, and the thread left behind holds up neither close nor the next fetch."""
    jwks_server.publish(rsa_key("slow"))
    jwks_server.delay = 60.0  # answers a minute later
    verifier = await start_verifier(jwks_server.url, start_wait=0.5, min_interval=0.1)
    keys = keys_of(verifier)
    async with asyncio.timeout(30):  # the fetch gives up at twice the socket timeout (2 s)
        while keys.fetches < 2:  # the refresher goes on: it does not hang on the first fetch
            await asyncio.sleep(0.1)
    assert keys.known == 0
    async with asyncio.timeout(10):
        await verifier.close()


async def test_beyond_the_cap_an_unknown_kid_is_refused_without_waiting(
    jwks_server: JwksServer, start_verifier: StartVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks_server.publish(rsa_key("only"))
    verifier = await start_verifier(jwks_server.url, min_interval=60.0, unknown_wait=60.0)
    monkeypatch.setattr(jwks, "_MAX_WAITING", 0)
    token = rsa_key("stranger").token({"sub": "eve"})
    async with asyncio.timeout(10):  # a waiter would wait a minute
        with pytest.raises(KeyNotYetKnown):
            await verifier.fresh(lambda: verifier.subscriber(token))


async def test_keys_are_refreshed_in_the_background(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    old, new = rsa_key("old"), ec_key("bg-new")
    jwks_server.publish(old)
    verifier = await start_verifier(jwks_server.url, refresh_interval=0.3, min_interval=0.1)
    token = old.token({"sub": "ann"})
    verifier.subscriber(token)
    jwks_server.publish(new)  # no token asks: the periodic refresh alone sees it
    await eventually_refused(verifier, token)
    assert verifier.subscriber(new.token({"sub": "ann"})).user == "ann"


async def test_a_provider_that_is_down_leaves_known_keys_working(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    known, later = rsa_key("known"), ec_key("later")
    jwks_server.publish(known)
    verifier = await start_verifier(jwks_server.url, min_interval=0.1, refresh_interval=0.2)
    jwks_server.down = True  # 503s
    await asyncio.sleep(0.8)  # several failed periodic refreshes
    failed = jwks_server.requests
    assert failed >= 2
    assert verifier.subscriber(known.token({"sub": "ann", "jti": "a"})).user == "ann"
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.subscriber(later.token({"sub": "bob"}))

    jwks_server.stop()  # not even listening
    await asyncio.sleep(0.5)
    assert verifier.subscriber(known.token({"sub": "ann", "jti": "b"})).user == "ann"

    jwks_server.down = False
    jwks_server.publish(known, later)
    jwks_server.start()  # back, with a new key: picked up by the retries
    await eventually_accepted(verifier, later.token({"sub": "bob"}))


async def test_a_provider_down_at_start_up_does_not_stop_it_tokens_wait_for_keys(
    start_verifier: StartVerifier,
) -> None:
    es = ec_key()
    server = JwksServer(es, port=free_port())  # not started: nothing listens there
    began = time.monotonic()
    verifier = await start_verifier(server.url, min_interval=0.1, start_wait=0.5)
    assert time.monotonic() - began < 2
    token = es.token({"sub": "ann"})
    with pytest.raises(Unauthorized, match="not available yet"):
        verifier.subscriber(token)
    server.start()
    try:
        await eventually_accepted(verifier, token)
    finally:
        server.stop()


async def test_a_flood_of_unknown_kids_makes_a_bounded_number_of_fetches(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    rs = rsa_key("real")
    jwks_server.publish(rs)
    verifier = await start_verifier(jwks_server.url, min_interval=0.5)
    assert jwks_server.requests == 1
    garbage = [
        SigningKey(uuid.uuid4().hex, "RS256", rs.private).token({"sub": "eve"}) for _ in range(1000)
    ]
    began = time.monotonic()
    for token in garbage:
        with pytest.raises(Unauthorized, match="unknown signing key"):
            verifier.subscriber(token)
    assert time.monotonic() - began < 2  # refused at once: nothing fetched while refusing
    assert jwks_server.requests == 1  # nor before the event loop runs the refresher
    await asyncio.sleep(1.5)  # three rate-limit intervals
    assert jwks_server.requests == 2  # the 1000 unknown kids made one fetch
    for token in garbage[:500]:  # and again, a second burst later
        with pytest.raises(Unauthorized):
            verifier.subscriber(token)
    await asyncio.sleep(1.5)
    assert jwks_server.requests == 3
    assert verifier.subscriber(rs.token({"sub": "ann"})).user == "ann"


async def test_a_slow_provider_never_blocks_the_event_loop(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    rs = rsa_key("real")
    jwks_server.publish(rs)
    verifier = await start_verifier(jwks_server.url, min_interval=0.1)
    jwks_server.delay = 1.0  # every fetch now takes a second
    with pytest.raises(Unauthorized):
        verifier.subscriber(rsa_key("unknown").token({"sub": "x"}))  # asks for a fetch
    worst, last = 0.0, time.monotonic()
    for _ in range(60):  # 1.2 s of ticks while the fetch is in flight
        await asyncio.sleep(0.02)
        now = time.monotonic()
        worst, last = max(worst, now - last), now
        assert verifier.subscriber(rs.token({"sub": "ann"})).user == "ann"
    assert jwks_server.requests == 2
    assert worst < 0.5  # a fetch takes 1 s: the loop never waited on it


async def test_audience_and_issuer_when_set_must_match(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    rs = rsa_key("rs-aud")
    jwks_server.publish(rs)
    verifier = await start_verifier(
        jwks_server.url, audience=("api://hub", "api://other"), issuer="https://idp.example/"
    )
    good = {"sub": "ann", "aud": "api://hub", "iss": "https://idp.example/"}
    assert verifier.subscriber(rs.token(good)).user == "ann"
    assert verifier.subscriber(rs.token({**good, "aud": ["x", "api://other"]})).user == "ann"
    for claims, reason in [
        ({**good, "aud": "api://elsewhere"}, "Audience doesn't match"),
        ({k: v for k, v in good.items() if k != "aud"}, 'missing the "aud" claim'),
        ({**good, "iss": "https://evil.example/"}, "Invalid issuer"),
        ({k: v for k, v in good.items() if k != "iss"}, 'missing the "iss" claim'),
    ]:
        with pytest.raises(Unauthorized, match=reason):
            verifier.subscriber(rs.token(claims))


async def test_without_an_audience_setting_a_token_with_aud_is_accepted(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    rs = rsa_key("rs-aud")
    jwks_server.publish(rs)
    verifier = await start_verifier(jwks_server.url)
    claims = {"sub": "ann", "aud": "api://anything", "iss": "https://whoever/"}
    assert verifier.subscriber(rs.token(claims)).user == "ann"
    # And with a configured HS key too (it used to be "Invalid audience").
    hs = TokenVerifier(SUBSCRIBER_KEY, "HS256", "subscriber")
    assert hs.subscriber(jwt.encode(claims, SUBSCRIBER_KEY, algorithm="HS256")).user == "ann"


@pytest.mark.parametrize("algorithm", ["HS256", "HS512"])
def test_a_configured_key_checks_audience_and_issuer_too(algorithm: str) -> None:
    """The quick HS* path knows nothing of aud/iss: with them set, PyJWT decides every token."""
    key = SUBSCRIBER_KEY * 2
    verifier = TokenVerifier(
        key, algorithm, "publisher", audience=("hub",), issuer="https://idp.example/"
    )
    good = {"sub": "svc", "publish": ["*"], "aud": "hub", "iss": "https://idp.example/"}
    assert verifier.publisher(jwt.encode(good, key, algorithm=algorithm)).grants == ("*",)
    plain = {"sub": "svc", "publish": ["*"]}  # what the quick path would have accepted
    with pytest.raises(Unauthorized, match='"aud"'):
        verifier.publisher(jwt.encode({**plain, "iss": good["iss"]}, key, algorithm=algorithm))
    with pytest.raises(Unauthorized, match='"iss"'):
        verifier.publisher(jwt.encode({**plain, "aud": "hub"}, key, algorithm=algorithm))


URL_CLAIMS = "https://example.com/claims"


@pytest.mark.parametrize(
    ("claims", "path", "found"),
    [
        ({"sub": "a"}, "sub", "a"),
        ({"a": {"b": {"c": 1}}}, "a.b.c", 1),
        ({f"{URL_CLAIMS}.topics": ["flat"]}, f"{URL_CLAIMS}.topics", ["flat"]),
        ({URL_CLAIMS: {"topics": ["nested"]}}, f"{URL_CLAIMS}.topics", ["nested"]),
        # Both exist: the longest claim name wins.
        (
            {f"{URL_CLAIMS}.topics": ["flat"], URL_CLAIMS: {"topics": ["nested"]}},
            f"{URL_CLAIMS}.topics",
            ["flat"],
        ),
        ({"a.b": {"c": 2}, "a": {"b": {"c": 1}}}, "a.b.c", 2),
        # The longest name leads nowhere: the next shorter one is tried.
        ({"a.b": {"x": 2}, "a": {"b": {"c": 1}}}, "a.b.c", 1),
        ({"a.b": "not an object", "a": {"b": {"c": 1}}}, "a.b.c", 1),
        (
            {"app": {"https://example.com/roles": {"topics": ["deep"]}}},
            "app.https://example.com/roles.topics",
            ["deep"],
        ),
    ],
)
def test_a_dotted_path_tries_the_longest_claim_name_first(
    claims: dict[str, Any], path: str, found: Any
) -> None:
    assert claim_at(claims, path) == found


@pytest.mark.parametrize(
    ("claims", "path"),
    [({}, "sub"), ({"a": {"b": 1}}, "a.c"), ({"a": 1}, "a.b"), ({"a": {"b": 1}}, ".a.b")],
)
def test_a_dotted_path_that_leads_nowhere_finds_nothing(claims: dict[str, Any], path: str) -> None:
    assert claim_at(claims, path) is MISSING


async def test_user_and_topics_are_read_at_the_configured_paths(
    jwks_server: JwksServer, start_verifier: StartVerifier
) -> None:
    es = ec_key()
    jwks_server.publish(es)
    verifier = await start_verifier(
        jwks_server.url,
        claim_user=f"{URL_CLAIMS}.uid",
        claim_topics=f"{URL_CLAIMS}.hub.topics",
    )
    token = es.token({"sub": "auth0|123", URL_CLAIMS: {"uid": "ann", "hub": {"topics": ["n"]}}})
    subscriber = verifier.subscriber(token)
    assert (subscriber.user, subscriber.topic_grants) == ("ann", ("n",))
    flat = es.token({f"{URL_CLAIMS}.uid": "bob", f"{URL_CLAIMS}.hub.topics": "one"})
    subscriber = verifier.subscriber(flat)  # no `sub` needed when the user is elsewhere
    assert (subscriber.user, subscriber.topic_grants) == ("bob", ("one",))
    with pytest.raises(Unauthorized, match=r"claim 'https://example.com/claims.uid' must be"):
        verifier.subscriber(es.token({"sub": "ann"}))
    with pytest.raises(Unauthorized, match="must be a list of strings"):
        verifier.subscriber(es.token({URL_CLAIMS: {"uid": "ann", "hub": {"topics": [1]}}}))


def test_a_configured_key_reads_claim_paths_too() -> None:
    verifier = TokenVerifier(SUBSCRIBER_KEY, "HS256", "subscriber", claim_user="user.id")
    token = jwt.encode({"user": {"id": "ann"}, "topics": ["x"]}, SUBSCRIBER_KEY, "HS256")
    assert verifier.subscriber(token).user == "ann"


def test_start_up_needs_no_key_with_a_jwks_url() -> None:
    settings = dataclasses.replace(
        Settings(),
        subscriber_jwks_url="https://idp.example/.well-known/jwks.json",
        publisher_jwks_url="https://idp.example/.well-known/jwks.json",
        port=free_port(),
    )
    settings, generated = with_keys(settings)
    assert not generated
    assert settings.subscriber_jwt_key == settings.publisher_jwt_key == ""
    check(settings)  # builds both verifiers; fetches nothing


async def test_a_hub_accepts_identity_provider_tokens_end_to_end(make_hub: MakeHub) -> None:
    subscriber_keys, publisher_keys = rsa_key("sub-rs"), ec_key("pub-es")
    subscribers = JwksServer(subscriber_keys).start()
    publishers = JwksServer(publisher_keys).start()
    try:
        hub = await make_hub(
            subscriber_jwt_key="",
            publisher_jwt_key="",
            subscriber_jwks_url=subscribers.url,
            publisher_jwks_url=publishers.url,
            subscriber_jwt_audience=("hub",),
            subscriber_claim_topics=f"{URL_CLAIMS}.topics",
        )
        token = subscriber_keys.token({"sub": "ann", "aud": "hub", URL_CLAIMS: {"topics": ["n"]}})
        stream = await hub.subscribe(topics=["n"], token=token)
        publisher = publisher_keys.token({"sub": "svc", "publish": ["*"], "aud": "whatever"})
        status, answer = await hub.post({"topics": ["n"], "data": "from the idp"}, token=publisher)
        assert status == 200, answer
        assert (await stream.next()).data == "from the idp"
        stream.close()
        # Each kind only with its own provider's keys; an HS token is no longer accepted.
        status, _ = await hub.post({"topics": ["n"], "data": "x"}, token=token)
        assert status == 401
        hs = jwt.encode({"sub": "ann"}, SUBSCRIBER_KEY, algorithm="HS256")
        answer = await hub.client.get("/events", headers={"Authorization": f"Bearer {hs}"})
        assert answer.status == 401
        answer.release()
        # The subscriber token's kid is unknown to the publishers' provider: asked once more.
        assert (subscribers.requests, publishers.requests) == (1, 2)
        # The provider rotates: the first token with the new key opens a stream at once.
        rotated = rsa_key("sub-rs-2")
        subscribers.publish(subscriber_keys, rotated)
        token = rotated.token({"sub": "ann", "aud": "hub", URL_CLAIMS: {"topics": ["n"]}})
        stream = await hub.subscribe(topics=["n"], token=token)
        stream.close()
        assert subscribers.requests == 2
    finally:
        subscribers.stop()
        publishers.stop()


async def test_a_hub_starts_while_its_provider_is_down_and_refuses_tokens(
    make_hub: MakeHub,
) -> None:
    es = ec_key()
    nobody = JwksServer(es, port=free_port())  # nothing listens there
    began = time.monotonic()
    hub = await make_hub(subscriber_jwt_key="", subscriber_jwks_url=nobody.url)
    assert time.monotonic() - began < 5
    answer = await hub.client.get(
        "/events", headers={"Authorization": f"Bearer {es.token({'sub': 'ann'})}"}
    )
    assert answer.status == 401
    assert "not available yet" in (await answer.json(content_type=None))["detail"]
    assert (await hub.post({"users": ["ann"], "data": "x"}))[0] == 200  # publishers unaffected
