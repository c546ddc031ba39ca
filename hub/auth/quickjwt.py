"""The plain HS* token checked without PyJWT, for streams opened with a token not seen before.

PyJWT prepares an HMAC key again on every decode (trying it as DER and as a
JWK) and checks base64 one character at a time; for a new token that is about
a fifth of the CPU of accepting a stream (README, "Security"). This path
accepts exactly the tokens below and returns None for every other, including
every token it would refuse, so that PyJWT decides those with its own words:

- ASCII, three segments `header.payload.signature`, each unpadded base64url
  in its one canonical spelling, the header segment at most 128 characters;
- a header that is a JSON object of `alg` (the configured algorithm) and
  optionally `typ`, nothing else;
- an HMAC signature that verifies under the key;
- a payload that is a JSON object without `aud`, whose `sub` and `jti`, if
  present, are strings, and with a `sub` when one is required.

Time claims are not looked at: what it accepts is what PyJWT accepts with its
time checks off, and `TokenVerifier` reads and checks `exp`, `nbf` and `iat`
for every token, whichever path verified it. Nothing here raises: any
exception returns None.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from typing import Any

_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]+")
_HEADER_FIELDS = frozenset({"alg", "typ"})
# `{"alg":"HS512","typ":"JWT"}` takes 36 characters: anything much longer is not plain.
_MAX_HEADER = 128


def _decoded(segment: bytes) -> bytes:
    if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    # The last character's spare bits must be zero, as PyJWT insists: otherwise one
    # signature would have several spellings.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment:
        raise ValueError("not canonical base64url")
    return raw


class QuickHS:
    """Verifies plain tokens signed with `algorithm` (HS256/384/512) under `key`."""

    def __init__(self, key: str, algorithm: str) -> None:
        self._key = key.encode()
        self._digest = _DIGESTS[algorithm]
        self._algorithm = algorithm

    @staticmethod
    def supports(algorithm: str) -> bool:
        return algorithm in _DIGESTS

    def claims(self, token: str, require_sub: bool) -> dict[str, Any] | None:
        """The token's claims if it is plain and validly signed; None to let PyJWT decide."""
        try:
            return self._plain(token, require_sub)
        except Exception:  # malformed, nested too deep, anything: PyJWT words the refusal
            return None

    def _plain(self, token: str, require_sub: bool) -> dict[str, Any] | None:
        raw = token.encode("ascii")
        signing_input, _, signature = raw.rpartition(b".")
        header_part, _, payload_part = signing_input.partition(b".")
        if len(header_part) > _MAX_HEADER:  # parsed before the signature is checked
            return None
        header = json.loads(_decoded(header_part))
        if (
            not isinstance(header, dict)
            or header.get("alg") != self._algorithm
            or not header.keys() <= _HEADER_FIELDS
        ):
            return None
        expected = hmac.digest(self._key, signing_input, self._digest)
        if not hmac.compare_digest(expected, _decoded(signature)):
            return None
        claims = json.loads(_decoded(payload_part))
        if not isinstance(claims, dict) or "aud" in claims:
            return None
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                return None
        if require_sub and claims.get("sub") is None:
            return None
        return claims
