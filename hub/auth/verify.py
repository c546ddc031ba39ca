"""JWT verification for subscribers and publishers, and minting for development.

Subscribers and publishers have separate keys, so a token of one kind never
works as the other. The key is a configured one (only the configured algorithm
is accepted, never `none`) or an identity provider's, picked by `kid` from its
JWKS URL (`hub.auth.jwks`: fetched in the background, never while a request
waits). PyJWT decides, except for plain HS* tokens (`hub.auth.quickjwt`); either
way the time claims are then read and checked here, as PyJWT compares them, so
that a remembered token is held to exactly the same `exp`, `nbf` and `iat`.

`aud` and `iss` are checked when an audience or issuer is configured; when no
audience is, a token carrying an `aud` is accepted all the same. The user id
and topic grants are read at configurable claim paths (`claim_at`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hub.auth.jwks import JwksKeys, KeyNotYetKnown
from hub.auth.quickjwt import QuickHS
from hub.channels import valid_name
from hub.config import Settings
from hub.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Subscriber:
    user: str
    topic_grants: tuple[str, ...]
    # The moment the token stops being accepted (`exp` plus the leeway), on time.time()'s clock.
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Publisher:
    name: str
    grants: tuple[str, ...]


# What `claim_at` finds at a path that leads nowhere.
MISSING: Any = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted `path`, or `MISSING`.

    Claim names may hold dots themselves (`https://example.com/claims`), so at
    each level the longest name that exists is tried first: the whole remaining
    path as one name, then the path cut at its last dot, and so on, descending
    into an object; a branch that leads nowhere falls back to the next shorter
    name. `https://example.com/claims.topics` thus finds a top-level claim of
    that whole name, else `topics` inside `https://example.com/claims`, else
    `com/claims.topics` inside `https://example` inside … .
    """
    if path in claims:
        return claims[path]
    cut = len(path)
    while (cut := path.rfind(".", 0, cut)) > 0:
        inner = claims.get(path[:cut], MISSING)
        if isinstance(inner, Mapping):
            found = claim_at(inner, path[cut + 1 :])
            if found is not MISSING:
                return found
    return MISSING


def _grants(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    value = claim_at(claims, claim)
    if value is MISSING:
        value = []
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


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    """A time claim as PyJWT compares it (`int()` of it), once it is known to be a NumericDate.

    PyJWT takes whatever `int()` takes (`"1795000000"`, `true`); the hub JSON numbers only,
    finite and within a float's range, so that every later check of a remembered token
    reads the same number PyJWT read.
    """
    if name not in claims:
        return None
    value = claims[name]
    try:
        valid = type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an integer past a float's range
        valid = False
    if not valid:
        raise Unauthorized(f"claim {name!r} must be a NumericDate (a JSON number of seconds)")
    return int(value)


@dataclass(frozen=True, slots=True)
class TimeClaims:
    """A token's `exp`, `nbf` and `iat`, read once and checked on every use."""

    exp: int | None
    nbf: int | None
    iat: int | None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> TimeClaims:
        return cls(*(_numeric_date(claims, name) for name in ("exp", "nbf", "iat")))

    def refusal(self, now: float, leeway: float) -> str | None:
        """Why the token is not accepted at `now`, with PyJWT's comparisons in its order."""
        if self.iat is not None and self.iat > now + leeway:
            return "token issued in the future (iat)"
        if self.nbf is not None and self.nbf > now + leeway:
            return "token not yet valid (nbf)"
        if self.exp is not None and self.exp <= now - leeway:  # expired at `exp` itself
            return "token expired"
        return None


# Verified tokens remembered (oldest dropped first): a publisher sends the same token with
# every request, and a signature check costs more than the rest of a publish.
_CACHE_SIZE = 4096


class TokenVerifier:
    """Checks signature, algorithm and time claims of one kind of token.

    A token that passed is remembered with its time claims, which are checked
    again on every use; the signature never changes, so it is not. `leeway`
    (seconds) is allowed on `exp`, `nbf` and `iat` alike, as PyJWT applies it.
    """

    def __init__(
        self,
        key: str,
        algorithm: str,
        kind: str,
        leeway: float = 0.0,
        *,
        jwks: JwksKeys | None = None,
        audience: Sequence[str] = (),
        issuer: str = "",
        claim_user: str = "sub",
        claim_topics: str = "topics",
    ) -> None:
        setting = f"HUB_{kind.upper()}_JWT_KEY"
        self._jwks = jwks
        if jwks is None:
            if not key:
                raise ConfigError(f"{setting}: no {kind} key configured")
            self._key = _prepared(load_key(key, algorithm, setting), algorithm, setting)
        self._algorithm = algorithm
        self._kind = kind
        self._leeway = leeway
        self._audience = list(audience) or None
        self._issuer = issuer or None
        self._claim_user = claim_user
        self._claim_topics = claim_topics
        self._require_sub = kind == "subscriber" and claim_user == "sub"
        # The quick path knows nothing of `aud`, `iss` or a provider's keys.
        plain = jwks is None and self._audience is None and self._issuer is None
        self._quick = QuickHS(key, algorithm) if plain and QuickHS.supports(algorithm) else None
        self._verified: dict[str, tuple[Any, TimeClaims]] = {}
        self._generation = 0

    @classmethod
    def for_settings(cls, settings: Settings, kind: str) -> TokenVerifier:
        """The verifier of `kind` ("subscriber" or "publisher") the settings describe."""
        url: str = getattr(settings, f"{kind}_jwks_url")
        return cls(
            getattr(settings, f"{kind}_jwt_key"),
            getattr(settings, f"{kind}_jwt_algorithm"),
            kind,
            leeway=settings.jwt_leeway,
            jwks=JwksKeys(url, kind) if url else None,
            audience=getattr(settings, f"{kind}_jwt_audience"),
            issuer=getattr(settings, f"{kind}_jwt_issuer"),
            claim_user=settings.subscriber_claim_user if kind == "subscriber" else "sub",
            claim_topics=settings.subscriber_claim_topics,
        )

    @property
    def jwks(self) -> JwksKeys | None:
        return self._jwks

    async def start(self) -> None:
        """Fetch an identity provider's keys, if this verifier uses one, and keep them fresh."""
        if self._jwks is not None:
            await self._jwks.start()

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    async def fresh(self, check: Callable[[], T]) -> T:
        """`check()` (which verifies a token of this kind); if the token names a key not
        known yet, once more after the provider's keys have been fetched again."""
        try:
            return check()
        except KeyNotYetKnown as unknown:
            if self._jwks is None:
                raise
            await self._jwks.refreshed(unknown.kid)
            return check()

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of `token` if it is accepted now; Unauthorized otherwise."""
        return self._verify(token)[0]

    def _verify(self, token: str) -> tuple[dict[str, Any], TimeClaims]:
        claims = self._quick.claims(token, self._require_sub) if self._quick else None
        if claims is None:
            claims = self._decode(token)
        times = TimeClaims.of(claims)
        # PyJWT checked them a moment ago (or the quick path left them to us): checked here
        # too, so that what is remembered is what was checked.
        refusal = times.refusal(time.time(), self._leeway)
        if refusal is not None:
            raise Unauthorized(refusal)
        return claims, times

    def _decode(self, token: str) -> dict[str, Any]:
        # A compact JWS is base64url and dots: anything else is refused before PyJWT, which
        # would fail to encode a lone surrogate (undecodable bytes in a header) as UTF-8.
        if not token.isascii():
            raise Unauthorized(f"invalid {self._kind} token: not a JWT")
        key, algorithm = self._key_for(token) if self._jwks else (self._key, self._algorithm)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={
                    "require": ["sub"] if self._require_sub else [],
                    # No audience configured: a token's `aud` is not held against it.
                    "verify_aud": self._audience is not None,
                },
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError as exc:
            if "(iat)" in str(exc):
                raise Unauthorized("token issued in the future (iat)") from None
            raise Unauthorized("token not yet valid (nbf)") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid {self._kind} token: {exc}") from None
        except Exception as exc:  # a token is anyone's input: failing to read it is a refusal
            log.debug("%s token unreadable: %s", self._kind, type(exc).__name__)
            raise Unauthorized(f"invalid {self._kind} token") from None
        return claims

    def _key_for(self, token: str) -> tuple[Any, str]:
        """The provider's key the token's `kid` names, and its one algorithm."""
        assert self._jwks is not None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid {self._kind} token: {exc}") from None
        except Exception as exc:
            log.debug("%s token header unreadable: %s", self._kind, type(exc).__name__)
            raise Unauthorized(f"invalid {self._kind} token") from None
        found = self._jwks.key(kid)
        return found.key, found.algorithm_name

    def _remembered(self, token: str) -> Any:
        """What `token` verified to before, with its time claims checked now; None if new."""
        if self._jwks is not None and self._jwks.generation != self._generation:
            # The provider removed or changed a key: what it verified is no longer trusted.
            self._verified.clear()
            self._generation = self._jwks.generation
        known = self._verified.get(token)
        if known is None:
            return None
        value, times = known
        refusal = times.refusal(time.time(), self._leeway)
        if refusal is not None:
            del self._verified[token]
            raise Unauthorized(refusal)
        return value

    def _remember(self, token: str, value: Any, times: TimeClaims) -> None:
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (value, times)

    def subscriber(self, token: str) -> Subscriber:
        known = self._remembered(token)
        if isinstance(known, Subscriber):
            return known
        claims, times = self._verify(token)
        user = claim_at(claims, self._claim_user)
        if not valid_name(user):
            raise Unauthorized(
                f"claim {self._claim_user!r} must be a user id matching [A-Za-z0-9_.@:-]{{1,128}}"
            )
        subscriber = Subscriber(
            user=str(user),
            topic_grants=_grants(claims, self._claim_topics),
            expires_at=None if times.exp is None else times.exp + self._leeway,
        )
        self._remember(token, subscriber, times)
        return subscriber

    def publisher(self, token: str) -> Publisher:
        known = self._remembered(token)
        if isinstance(known, Publisher):
            return known
        claims, times = self._verify(token)
        publisher = Publisher(name=str(claims.get("sub", "")), grants=_grants(claims, "publish"))
        self._remember(token, publisher, times)
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
