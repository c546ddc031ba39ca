"""Token checks: signature, algorithm, expiry, claims, and keys kept apart."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.auth.verify import TokenVerifier, mint
from hub.errors import ConfigError, Unauthorized

KEY = "a-subscriber-key-that-is-long-enough-for-every-hmac-algorithm-0123456789"
verifier = TokenVerifier(KEY, "HS256", "subscriber")


def test_valid_subscriber_token() -> None:
    sub = verifier.subscriber(mint(KEY, "HS256", sub="alice", topics=["news", "room:*"]))
    assert sub.user == "alice"
    assert sub.topic_grants == ("news", "room:*")
    assert sub.expires_at is not None
    assert sub.expires_at > time.time()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        mint("another-key-that-is-also-long-enough-456", "HS256", sub="alice"),
        mint(KEY, "HS256", sub="alice")[:-2] + "xx",
        mint(KEY, "HS256", sub="alice", ttl=-5),
        jwt.encode({"sub": "alice"}, KEY, algorithm="HS512"),
        jwt.encode({"sub": "alice"}, None, algorithm="none"),  # type: ignore[arg-type]
        jwt.encode({"topics": ["x"]}, KEY, algorithm="HS256"),
        jwt.encode({"sub": "bad user!"}, KEY, algorithm="HS256"),
        jwt.encode({"sub": "a", "nbf": int(time.time()) + 600}, KEY, algorithm="HS256"),
        jwt.encode({"sub": "a", "topics": [1]}, KEY, algorithm="HS256"),
    ],
)
def test_bad_tokens_are_401(token: str) -> None:
    with pytest.raises(Unauthorized):
        verifier.subscriber(token)


def _es256_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A private key and its public key as PEM."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, pem


def test_es256_with_a_public_key() -> None:
    private, public_pem = _es256_keys()
    es = TokenVerifier(public_pem, "ES256", "subscriber")
    token = jwt.encode({"sub": "alice"}, private, algorithm="ES256")
    assert es.subscriber(token).user == "alice"
    # Algorithm confusion: an HS256 token "signed" with the public key is refused.
    with pytest.raises(Unauthorized):
        es.subscriber(_hs256_by_hand({"sub": "alice"}, public_pem.encode()))


def _hs256_by_hand(claims: dict[str, str], secret: bytes) -> str:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_publisher_grants() -> None:
    publisher = TokenVerifier("publisher-key-long-enough-0123456789", "HS256", "publisher")
    grants = publisher.publisher(
        mint("publisher-key-long-enough-0123456789", "HS256", sub="svc", publish=["user:*"])
    )
    assert grants.grants == ("user:*",)


def test_public_key_from_an_environment_variable_with_escaped_newlines() -> None:
    private, pem = _es256_keys()
    escaped = TokenVerifier(pem.replace("\n", "\\n"), "ES256", "subscriber")
    assert escaped.subscriber(jwt.encode({"sub": "e"}, private, algorithm="ES256")).user == "e"
    with pytest.raises(ConfigError, match="HUB_SUBSCRIBER_JWT_KEY"):
        TokenVerifier("/no/such/file.pem", "ES256", "subscriber")


def test_a_verified_token_is_remembered_but_its_expiry_still_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = TokenVerifier(KEY, "HS256", "subscriber")
    token = mint(KEY, "HS256", sub="alice", ttl=60)
    assert v.subscriber(token).user == "alice"

    def no_more_signature_checks(*args: object, **kwargs: object) -> None:
        raise AssertionError("a remembered token was verified again")

    monkeypatch.setattr("hub.auth.verify.jwt.decode", no_more_signature_checks)
    monkeypatch.setattr("hub.auth.verify.QuickHS.claims", no_more_signature_checks)
    assert v.subscriber(token).user == "alice"
    later = time.time() + 61
    monkeypatch.setattr("hub.auth.verify.time.time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        v.subscriber(token)


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.auth.verify._CACHE_SIZE", 2)
    v = TokenVerifier(KEY, "HS256", "publisher")
    tokens = [mint(KEY, "HS256", sub=f"p{n}", publish=["*"]) for n in range(3)]
    for token in tokens:
        assert v.publisher(token).grants == ("*",)
    assert len(v._verified) == 2
    assert tokens[0] not in v._verified, "the oldest is forgotten first"
