"""JWT verification for subscribers and publishers, and minting for development.

Subscribers and publishers have separate keys, so a token of one kind never
works as the other. Only the configured algorithm is accepted (never `none`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hub.channels import valid_name
from hub.errors import ConfigError, Unauthorized
from hub.quickjwt import QuickHS


@dataclass(frozen=True, slots=True)
class Subscriber:
    user: str
    topic_grants: tuple[str, ...]
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Publisher:
    name: str
    grants: tuple[str, ...]


def _grants(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unauthorized(f"claim {claim!r} must be a list of strings")
    return tuple(value)


def load_key(value: str, algorithm: str, setting: str) -> str:
    """A shared secret for HS*; for RS*/ES* a PEM public key, given inline or as a file path."""
    if algorithm.startswith("HS"):
        return value
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"{setting}: {algorithm} needs a PEM public key or a file holding one"
            )
        text = path.read_text().strip()
    # PEM passed through an environment variable often arrives with literal "\n".
    return text.replace("\\n", "\n")


def _prepared(key: str, algorithm: str, setting: str) -> Any:
    """The key parsed once at start-up: a bad key stops start-up, not every request."""
    try:
        prepared = jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{setting}: not a usable {algorithm} key ({exc})") from None
    if not algorithm.startswith("HS") and not isinstance(
        prepared, RSAPublicKey | EllipticCurvePublicKey
    ):
        raise ConfigError(f"{setting}: {algorithm} needs a public key, not a private one")
    return prepared


# Verified tokens remembered (oldest dropped first): a publisher sends the same token with
# every request, and a signature check costs more than the rest of a publish.
_CACHE_SIZE = 4096


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    return float(value) if isinstance(value, int | float) else None


class TokenVerifier:
    """Checks signature, algorithm, `exp` and `nbf` of one kind of token.

    A token that passed is remembered with its `exp` and `nbf`, which are
    checked again on every use; the signature never changes, so it is not.
    """

    def __init__(self, key: str, algorithm: str, kind: str) -> None:
        setting = f"HUB_{kind.upper()}_JWT_KEY"
        if not key:
            raise ConfigError(f"{setting}: no {kind} key configured")
        self._key = _prepared(load_key(key, algorithm, setting), algorithm, setting)
        self._algorithm = algorithm
        self._kind = kind
        self._quick = QuickHS(key, algorithm) if QuickHS.supports(algorithm) else None
        self._verified: dict[str, tuple[Any, float | None, float | None]] = {}

    def claims(self, token: str) -> dict[str, Any]:
        if self._quick is not None:
            quick = self._quick.claims(token, require_sub=self._kind == "subscriber")
            if quick is not None:
                return quick
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                options={"require": ["sub"] if self._kind == "subscriber" else []},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid (nbf)") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid {self._kind} token: {exc}") from None
        return claims

    def _remembered(self, token: str) -> Any:
        """What `token` verified to before, with its time claims checked now; None if new."""
        known = self._verified.get(token)
        if known is None:
            return None
        value, exp, nbf = known
        now = time.time()
        if exp is not None and exp <= now:  # as PyJWT: expired at `exp` itself
            del self._verified[token]
            raise Unauthorized("token expired")
        if nbf is not None and nbf > now:
            raise Unauthorized("token not yet valid (nbf)")
        return value

    def _remember(self, token: str, value: Any, claims: dict[str, Any]) -> None:
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (value, _time_claim(claims, "exp"), _time_claim(claims, "nbf"))

    def subscriber(self, token: str) -> Subscriber:
        known = self._remembered(token)
        if isinstance(known, Subscriber):
            return known
        claims = self.claims(token)
        user = claims.get("sub")
        if not valid_name(user):
            raise Unauthorized("claim 'sub' must be a user id matching [A-Za-z0-9_.@:-]{1,128}")
        subscriber = Subscriber(
            user=str(user),
            topic_grants=_grants(claims, "topics"),
            expires_at=_time_claim(claims, "exp"),
        )
        self._remember(token, subscriber, claims)
        return subscriber

    def publisher(self, token: str) -> Publisher:
        known = self._remembered(token)
        if isinstance(known, Publisher):
            return known
        claims = self.claims(token)
        publisher = Publisher(name=str(claims.get("sub", "")), grants=_grants(claims, "publish"))
        self._remember(token, publisher, claims)
        return publisher


def mint(
    key: str,
    algorithm: str,
    *,
    sub: str,
    topics: Sequence[str] = (),
    publish: Sequence[str] = (),
    ttl: int | None = 3600,
) -> str:
    """A signed token for development and tests (`hub token`)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now}
    if ttl:
        claims["exp"] = now + ttl
    if topics:
        claims["topics"] = list(topics)
    if publish:
        claims["publish"] = list(publish)
    return jwt.encode(claims, key, algorithm=algorithm)
