"""Mercure tokens: the algorithms a key allows, classic claims, 1.0 access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hub.errors import ConfigError
from hub.mercure.tokens import InvalidToken, MercureTokens

SECRET = "s" * 32
AUD = "https://hub.example/.well-known/mercure"


def public_pem(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signed = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
    signed += part(json.dumps(claims).encode())
    return signed + "." + part(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


def modern(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    base = {"aud": AUD, "exp": time.time() + 60, "authorization_details": []}
    return jwt.encode({**base, **claims}, key, algorithm, headers={"typ": "at+jwt"})


@pytest.mark.parametrize(
    ("private", "algorithm"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
def test_a_pem_public_key_verifies_its_own_kind_and_nothing_else(
    private: Any, algorithm: str
) -> None:
    pem = public_pem(private)
    tokens = MercureTokens(pem, "HUB_MERCURE_JWT_KEY")
    good = jwt.encode({"mercure": {"publish": ["*"]}}, private, algorithm)
    assert tokens.grants(good).publish[0].everything
    # The public key as an HMAC secret: the algorithm-confusion attack (signed by hand:
    # PyJWT will not sign with a PEM as a secret).
    forged = hs256_by_hand({"mercure": {"publish": ["*"]}}, pem.encode())
    with pytest.raises(InvalidToken):
        tokens.grants(forged)


def test_unsigned_tokens_are_refused() -> None:
    tokens = MercureTokens(SECRET, "K")
    unsigned = jwt.encode({"mercure": {"publish": ["*"]}}, "", "none")
    with pytest.raises(InvalidToken):
        tokens.grants(unsigned)


def test_short_secrets_and_private_keys_stop_start_up() -> None:
    with pytest.raises(ConfigError):
        MercureTokens("short", "K")
    with pytest.raises(ConfigError):
        MercureTokens("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", "K")


def test_classic_claims() -> None:
    tokens = MercureTokens(SECRET, "K")
    grants = tokens.grants(
        jwt.encode({"mercure": {"publish": ["urn:{x}"], "subscribe": ["urn:a"]}}, SECRET)
    )
    assert [s.kind for s in grants.publish] == ["template"]
    assert [s.text for s in grants.subscribe] == ["urn:a"]
    assert not grants.modern
    for bad in ({"mercure": "all"}, {"mercure": {"publish": "*"}}, {"mercure": {"subscribe": [1]}}):
        with pytest.raises(InvalidToken):
            MercureTokens(SECRET, "K").grants(jwt.encode(bad, SECRET))


def test_modern_tokens_need_the_audience_exp_and_a_valid_issuer() -> None:
    tokens = MercureTokens(SECRET, "K", audience=AUD, issuer="https://idp.example")
    detail = {"type": "mercure", "actions": ["subscribe"], "topics": [{"match": "urn:a"}]}
    good = modern({"iss": "https://idp.example", "authorization_details": [detail]})
    assert tokens.grants(good).modern
    assert [s.text for s in tokens.grants(good).subscribe] == ["urn:a"]
    for bad in (
        modern({"iss": "https://other.example"}),
        modern({"iss": "https://idp.example", "aud": "https://other/.well-known/mercure"}),
        jwt.encode({"aud": AUD, "iss": "https://idp.example"}, SECRET, headers={"typ": "at+jwt"}),
    ):
        with pytest.raises(InvalidToken):
            tokens.grants(bad)
    with pytest.raises(InvalidToken):  # no audience configured: 1.0 tokens cannot be checked
        MercureTokens(SECRET, "K").grants(modern({}))


@pytest.mark.parametrize(
    "details",
    [
        "mercure",
        [{"type": "mercure", "actions": [], "topics": [{"match": "*"}]}],
        [{"type": "mercure", "actions": ["publish"], "topics": []}],
        [{"type": "mercure", "actions": ["publish"], "topics": ["*"]}],
        [
            {
                "type": "mercure",
                "actions": ["publish"],
                "topics": [{"match": "x", "matchType": "Regex"}],
            }
        ],
        [
            {
                "type": "mercure",
                "actions": ["publish"],
                "topics": [{"match": "(((", "matchType": "URLPattern"}],
            }
        ],
        [{"type": "mercure", "actions": ["publish"], "topics": [{"match": "*"}]}] * 33,
        [{"type": "mercure", "actions": ["publish"], "topics": [{"match": "*", "matchType": []}]}],
        [{"type": "mercure", "actions": ["publish"], "topics": [{"match": "*", "matchType": {}}]}],
    ],
)
def test_one_invalid_detail_invalidates_the_token(details: Any) -> None:
    tokens = MercureTokens(SECRET, "K", audience=AUD)
    with pytest.raises(InvalidToken) as caught:
        tokens.grants(modern({"authorization_details": details}))
    assert caught.value.status == 401


def test_details_of_other_types_are_ignored() -> None:
    tokens = MercureTokens(SECRET, "K", audience=AUD)
    grants = tokens.grants(modern({"authorization_details": [{"type": "payment", "x": 1}]}))
    assert grants.publish == grants.subscribe == ()


def test_a_remembered_token_still_expires() -> None:
    tokens = MercureTokens(SECRET, "K")
    token = jwt.encode({"mercure": {"subscribe": ["*"]}, "exp": time.time() + 1.5}, SECRET)
    assert tokens.grants(token).subscribe
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            tokens.grants(token)
        except InvalidToken:
            return
        time.sleep(0.1)
    pytest.fail("the remembered token was still accepted after its exp")


def test_an_exp_that_is_not_a_number_is_refused() -> None:
    """PyJWT takes a numeric string; a remembered token's later checks would not."""
    tokens = MercureTokens(SECRET, "K")
    token = jwt.encode({"mercure": {"subscribe": ["*"]}, "exp": str(int(time.time()) + 60)}, SECRET)
    with pytest.raises(InvalidToken):
        tokens.grants(token)


def test_a_classic_token_naming_another_audience_is_refused() -> None:
    tokens = MercureTokens(SECRET, "K", audience=AUD)
    claims = {"mercure": {"subscribe": ["*"]}}
    assert tokens.grants(jwt.encode(claims, SECRET)).subscribe  # no aud: a classic token
    assert tokens.grants(jwt.encode({**claims, "aud": [AUD, "x"]}, SECRET)).subscribe
    with pytest.raises(InvalidToken):
        tokens.grants(jwt.encode({**claims, "aud": "https://other.example/"}, SECRET))


def test_every_spelling_of_at_jwt_is_a_modern_token() -> None:
    tokens = MercureTokens(SECRET, "K", audience=AUD)
    claims = {"aud": "https://other.example/", "exp": time.time() + 60}
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt"):
        with pytest.raises(InvalidToken):  # held to 1.0's rules: the audience is wrong
            tokens.grants(jwt.encode(claims, SECRET, headers={"typ": typ}))
    odd: list[Any] = [["at+jwt"], 1]
    for other in odd:
        with pytest.raises(InvalidToken):
            tokens.grants(jwt.encode(claims, SECRET, headers={"typ": other}))
    good = jwt.encode({**claims, "aud": AUD}, SECRET, headers={"typ": "application/at+jwt"})
    assert tokens.grants(good).modern
