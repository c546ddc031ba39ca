"""Mercure tokens: which topics a publisher may publish to and a subscriber may read
privately, from a classic token (`mercure.publish` / `mercure.subscribe`) or a
Mercure 1.0 access token (`typ: at+jwt`, `aud` = the hub's resource identifier,
`authorization_details` of type `mercure`).

PyJWT checks signatures, with the algorithms the configured key allows (HS256
for a secret; RS*, PS*, ES* or EdDSA for a PEM public key) and never `none`.
Failures are RFC 6750 errors: 401 `invalid_token` without saying why, 403
`insufficient_scope`. A token that passed is remembered (with its `exp`, checked
on every use): publishers send the same token with every update.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from hub.errors import BadRequest, ConfigError, HubError
from hub.mercure.topics import Selector, selector

_CACHE_SIZE = 4096
_MAX_DETAILS = 32
_MAX_MATCHERS = 64
_KINDS = {"Exact": "exact", "URLPattern": "urlpattern"}


class InvalidToken(HubError):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error

    def headers(self) -> dict[str, str]:
        if self.error is None:  # no token at all: a challenge without an error code
            return {"WWW-Authenticate": 'Bearer realm="mercure"'}
        return {"WWW-Authenticate": f'Bearer realm="mercure", error="{self.error}"'}


class InsufficientScope(HubError):
    status = 403
    title = "Forbidden"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="mercure", error="insufficient_scope"'}


@dataclass(frozen=True, slots=True)
class Grants:
    """What one token allows. `modern`: a Mercure 1.0 access token."""

    publish: tuple[Selector, ...] = ()
    subscribe: tuple[Selector, ...] = ()
    expires_at: float | None = None
    modern: bool = False


ANONYMOUS = Grants()


def _algorithms(key: str, setting: str) -> tuple[Any, list[str]]:
    """The key as PyJWT takes it, and the algorithms it may verify (never from the token)."""
    text = key.strip().replace("\\n", "\n")
    if not text.startswith("-----BEGIN"):
        if len(key.encode()) < 32:
            raise ConfigError(f"{setting}: an HS256 key must be at least 32 bytes")
        return key, ["HS256"]
    try:
        public = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ConfigError(f"{setting}: not a PEM public key ({exc})") from None
    if isinstance(public, rsa.RSAPublicKey):
        return public, ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public, ["ES256", "ES384", "ES512"]
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return public, ["EdDSA"]
    raise ConfigError(f"{setting}: a public key of a kind JWTs are not signed with")


def _strings(value: Any, claim: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidToken(f"{claim} must be a list of strings")
    return value


def _classic(claims: dict[str, Any], base: str) -> tuple[tuple[Selector, ...], ...]:
    mercure = claims.get("mercure", {})
    if not isinstance(mercure, dict):
        raise InvalidToken("the mercure claim must be an object")
    return tuple(
        tuple(selector(text, "classic", base) for text in _strings(mercure.get(key, []), key))
        for key in ("publish", "subscribe")
    )


def _details(claims: dict[str, Any], base: str) -> tuple[tuple[Selector, ...], ...]:
    """`authorization_details`: every `mercure` detail must be valid, or none counts."""
    details = claims.get("authorization_details", [])
    if not isinstance(details, list) or len(details) > _MAX_DETAILS:
        raise InvalidToken(f"authorization_details must be a list of at most {_MAX_DETAILS}")
    granted: dict[str, list[Selector]] = {"publish": [], "subscribe": []}
    for detail in details:
        if not isinstance(detail, dict):
            raise InvalidToken("an authorization detail must be an object")
        if detail.get("type") != "mercure":
            continue
        actions = _strings(detail.get("actions"), "actions")
        topics = detail.get("topics")
        if not actions or not set(actions) <= set(granted) or not isinstance(topics, list):
            raise InvalidToken("a mercure detail needs actions (publish, subscribe) and topics")
        if not 0 < len(topics) <= _MAX_MATCHERS:
            raise InvalidToken(f"a mercure detail holds 1-{_MAX_MATCHERS} topic matchers")
        for matcher in topics:
            match_type = matcher.get("matchType", "Exact") if isinstance(matcher, dict) else None
            kind = _KINDS.get(match_type) if isinstance(match_type, str) else None
            if kind is None or not isinstance(matcher.get("match"), str):
                raise InvalidToken("a topic matcher is {match, matchType: Exact|URLPattern}")
            for action in actions:
                granted[action].append(selector(matcher["match"], kind, base))
    return tuple(granted["publish"]), tuple(granted["subscribe"])


class MercureTokens:
    """Verifies one kind of Mercure token (publisher's or subscriber's) with one key."""

    def __init__(
        self, key: str, setting: str, audience: str = "", issuer: str = "", base: str = ""
    ) -> None:
        self._key, self._algorithms = _algorithms(key, setting)
        self._audience = audience
        self._issuer = issuer or None
        self._base = base  # the hub's URL: relative URL patterns are read against it
        self._known: OrderedDict[str, Grants] = OrderedDict()

    def grants(self, token: str, in_url: bool = False) -> Grants:
        known = self._known.get(token)
        if known is None:
            known = self._verify(token)
            self._known[token] = known
            while len(self._known) > _CACHE_SIZE:
                self._known.popitem(last=False)
        if known.expires_at is not None and known.expires_at <= time.time():
            raise InvalidToken("the token is not valid")
        if in_url and known.modern:
            raise InvalidToken("a Mercure 1.0 token is never taken from the URL", "invalid_request")
        return known

    def _verify(self, token: str) -> Grants:
        try:
            modern = _modern(jwt.get_unverified_header(token).get("typ"))
            if modern and not self._audience:
                raise InvalidToken("Mercure 1.0 tokens need HUB_MERCURE_AUDIENCE set")
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience if modern else None,
                issuer=self._issuer if modern else None,
                options={"verify_aud": modern, "require": ["exp"] if modern else []},
            )
            if not modern and "aud" in claims and not self._names_this_hub(claims["aud"]):
                raise InvalidToken("the token is for another audience")
            parts = _details(claims, self._base) if modern else _classic(claims, self._base)
            expires = _expiry(claims)
        except (jwt.InvalidTokenError, BadRequest):
            # Never why: a bad signature and an expired token look alike (RFC 6750, the spec).
            raise InvalidToken("the token is not valid") from None
        return Grants(parts[0], parts[1], expires, modern)

    def _names_this_hub(self, aud: Any) -> bool:
        """A classic token need not name an audience; one that does must name this hub's
        (when one is configured), as RFC 7519 has it."""
        if not self._audience:
            return True
        return aud == self._audience or (isinstance(aud, list) and self._audience in aud)


def _modern(typ: Any) -> bool:
    """A Mercure 1.0 access token (RFC 9068's `at+jwt`, also spelled with `application/`);
    a `typ` of another kind than a string is no token of ours."""
    if typ is None:
        return False
    if not isinstance(typ, str):
        raise InvalidToken("typ must be a string")
    return typ.lower().removeprefix("application/") == "at+jwt"


def _expiry(claims: dict[str, Any]) -> float | None:
    """`exp` as a number: PyJWT also takes a numeric string, which a remembered token's
    later checks would miss."""
    exp = claims.get("exp")
    if exp is None:
        return None
    if type(exp) not in (int, float):
        raise InvalidToken("exp must be a number")
    return float(exp)


def covers(selectors: Sequence[Selector], topic: str) -> bool:
    return any(s.test(topic) for s in selectors)
