"""The quick HS* path accepts exactly the tokens its docstring describes, each with the claims
PyJWT reads; and a verifier with the quick path decides every token as PyJWT and the
NumericDate rule do."""

from __future__ import annotations

import base64
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.types import Options

from hub.auth import quickjwt
from hub.auth.quickjwt import QuickHS
from hub.auth.verify import TokenVerifier, mint
from hub.errors import Unauthorized
from tests.support.strategies import ANY_CHARACTER

KEY = "a-key-long-enough-for-hs512-" * 3
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class _Ago:
    """A time `seconds` before the token is made (negative: after), fixed only then."""

    seconds: float


def _resolved(claims: Any) -> Any:
    if not isinstance(claims, dict):
        return claims
    now = int(time.time())
    return {k: now - v.seconds if isinstance(v, _Ago) else v for k, v in claims.items()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Times well away from now, so the two checks, a moment apart, cannot disagree.
_times: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([_Ago(30), _Ago(-30), _Ago(7200.5), _Ago(-7200.5), None, True, False, "1"]),
    st.integers(5, 86_400).map(_Ago),
    st.integers(-86_400, -5).map(_Ago),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1795000000", [], {}, 10**30]),
)
_anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=4), st.lists(st.text(max_size=2))
)
_NAMES = ["sub", "exp", "nbf", "iat", "aud", "jti", "iss", "topics"]
_VALID = {"sub": "ann", "iat": _Ago(60), "exp": _Ago(-600), "topics": ["news"]}
_values = st.one_of(_times, _anything)
# A valid set with one claim changed or left out (each check reached), or anything at all.
_claims = st.one_of(
    st.tuples(st.sampled_from(_NAMES), _values).map(lambda nv: {**_VALID, nv[0]: nv[1]}),
    st.sampled_from(list(_VALID)).map(lambda n: {k: v for k, v in _VALID.items() if k != n}),
    st.dictionaries(st.sampled_from(_NAMES), _values, max_size=4),
    _anything,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "HS384", "none", "RS256", "", "hs256", 256]),
        "typ": st.sampled_from(["JWT", "jwt", 1, None]),
        "kid": _anything,
        "crit": st.sampled_from([["b64"], ["x"], [], "b64"]),
        "b64": st.booleans(),
    },
)
# Mostly well-formed and well-signed, so that the claims' checks are reached often.
_damage = st.sampled_from(
    ["", "", "", "", "padded", "flipped", "spare bits", "four parts", "space", "no signature"]
)


def _token(header: Any, claims: Any, key: str, digest: str, damage: str) -> str:
    payload = json.dumps(_resolved(claims)).encode()
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(payload)
    signature = _b64(hmac.new(key.encode(), signing_input.encode(), digest).digest())
    token = f"{signing_input}.{signature}"
    if damage == "padded":
        token += "=="
    elif damage == "flipped":
        token = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    elif damage == "spare bits":  # the last character's lowest bit: unused when HS256/512
        token = token[:-1] + _ALPHABET[_ALPHABET.index(token[-1]) ^ 1]
    elif damage == "four parts":
        token += ".e30"
    elif damage == "space":
        token = " " + token
    elif damage == "no signature":
        token = signing_input + "."
    return token


def _pyjwt(
    token: str,
    require_sub: bool,
    algorithm: str = "HS256",
    *,
    timed: bool = False,
    leeway: float = 0,
) -> dict[str, Any] | None:
    """PyJWT's claims, with its time checks (`timed`) or without them (as the quick path)."""
    options: Options = {
        "require": ["sub"] if require_sub else [],
        "verify_exp": timed,
        "verify_nbf": timed,
        "verify_iat": timed,
        # As the verifier with no audience configured: a token's `aud` is not held against
        # it (the quick path still leaves every token with an `aud` to PyJWT).
        "verify_aud": False,
    }
    try:
        claims: dict[str, Any] = jwt.decode(
            token, KEY, algorithms=[algorithm], options=options, leeway=leeway
        )
    except jwt.InvalidTokenError:
        return None
    return claims


def _numeric_dates(claims: dict[str, Any]) -> bool:
    """Every time claim present is a JSON number, finite and within a float's range."""
    for name in ("exp", "nbf", "iat"):
        if name in claims:
            value = claims[name]
            try:
                if type(value) not in (int, float) or not math.isfinite(value):
                    return False
            except OverflowError:
                return False
    return True


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal claims, NaN included (which is not equal to itself)."""
    return json.dumps(a) == json.dumps(b)


def _plain(token: str, header: Any, claims: Any, algorithm: str, require_sub: bool) -> bool:
    """What quickjwt's docstring says it accepts, for a token made from these, undamaged and
    signed with the right key and digest."""
    return (
        len(token.split(".")[0]) <= 128
        and isinstance(header, dict)
        and header.get("alg") == algorithm
        and header.keys() <= {"alg", "typ"}
        and isinstance(claims, dict)
        and "aud" not in claims
        and all(isinstance(claims[name], str) for name in ("sub", "jti") if name in claims)
        and not (require_sub and claims.get("sub") is None)
    )


_cases = {
    "header": st.one_of(
        st.sampled_from([{"alg": "HS256"}, {"alg": "HS256", "typ": "JWT"}]), _headers
    ),
    "claims": _claims,
    "algorithm": st.sampled_from(["HS256", "HS512"]),
    "key": st.sampled_from([KEY, KEY, KEY, KEY + "x"]),
    "digest": st.sampled_from(["right", "right", "right", "sha384"]),
    "damage": _damage,
    "require_sub": st.booleans(),
}


@settings(max_examples=1000, deadline=None)
@given(**_cases)
def test_the_quick_path_accepts_its_plain_tokens_with_pyjwts_claims_and_nothing_else(
    header: Any,
    claims: Any,
    algorithm: str,
    key: str,
    digest: str,
    damage: str,
    require_sub: bool,
) -> None:
    if digest == "right":
        digest = "sha" + algorithm[2:]
    if header.get("alg") == "HS256":
        header = {**header, "alg": algorithm}
    token = _token(header, claims, key, digest, damage)
    plain = (
        damage == ""
        and key == KEY
        and digest == "sha" + algorithm[2:]
        and _plain(token, header, _resolved(claims), algorithm, require_sub)
    )
    pyjwt = _pyjwt(token, require_sub, algorithm)
    if plain:
        assert pyjwt is not None, "PyJWT accepts every plain token"
    # Compared on every case: PyJWT's claims for a plain token, None for any other.
    assert _same(QuickHS(KEY, algorithm).claims(token, require_sub), pyjwt if plain else None)


@settings(max_examples=1000, deadline=None)
@given(**_cases, leeway=st.sampled_from([0.0, 2.5]))
def test_a_verifier_decides_every_token_as_pyjwt_and_the_numeric_date_rule(
    header: Any,
    claims: Any,
    algorithm: str,
    key: str,
    digest: str,
    damage: str,
    require_sub: bool,
    leeway: float,
) -> None:
    """The quick path, then the verifier's own time checks, refuse and accept as PyJWT (with
    its time checks and the leeway) does, less time claims that are not NumericDates."""
    if digest == "right":
        digest = "sha" + algorithm[2:]
    if header.get("alg") == "HS256":
        header = {**header, "alg": algorithm}
    token = _token(header, claims, key, digest, damage)
    kind = "subscriber" if require_sub else "publisher"
    verifier = TokenVerifier(KEY, algorithm, kind, leeway=leeway)
    try:
        ours: dict[str, Any] | None = verifier.claims(token)
    except Unauthorized:
        ours = None
    expected = _pyjwt(token, require_sub, algorithm, timed=True, leeway=leeway)
    if expected is not None and not _numeric_dates(expected):
        expected = None
    assert _same(ours, expected)


_EDGES: list[tuple[str, Any]] = [
    ("nbf", _Ago(-30)), ("iat", _Ago(-30)), ("exp", _Ago(30)), ("exp", _Ago(7200.5)),
    ("exp", None), ("nbf", None), ("iat", None), ("exp", True), ("exp", "1"), ("nbf", []),
    ("sub", 5), ("sub", None), ("jti", 5), ("jti", None), ("aud", "x"), ("aud", ""),
    ("iss", 5), ("exp", 1e300), ("exp", 10**30), ("exp", float("inf")), ("nbf", float("nan")),
    ("exp", 10**400), ("iat", -(10**400)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), _EDGES)
def test_each_claim_check_agrees_with_pyjwt(name: str, value: Any) -> None:
    header, claims = {"alg": "HS256", "typ": "JWT"}, {**_VALID, name: value}
    token = _token(header, claims, KEY, "sha256", "")
    quick = QuickHS(KEY, "HS256").claims(token, require_sub=True)
    plain = _plain(token, header, _resolved(claims), "HS256", require_sub=True)
    assert _same(quick, _pyjwt(token, require_sub=True) if plain else None)
    try:
        ours: dict[str, Any] | None = TokenVerifier(KEY, "HS256", "subscriber").claims(token)
    except Unauthorized:
        ours = None
    expected = _pyjwt(token, require_sub=True, timed=True)
    assert _same(ours, expected if expected and _numeric_dates(expected) else None)


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_the_hubs_own_tokens_take_the_quick_path(algorithm: str) -> None:
    subscriber = mint(KEY, algorithm, sub="ann", topics=["news"], ttl=600)
    publisher = mint(KEY, algorithm, sub="backend", publish=["*"], ttl=None)
    quick = QuickHS(KEY, algorithm)
    for token, require_sub in ((subscriber, True), (publisher, False)):
        claims = quick.claims(token, require_sub)
        assert claims is not None
        assert claims == jwt.decode(token, KEY, algorithms=[algorithm])


def test_a_token_it_cannot_judge_is_left_to_pyjwt() -> None:
    quick = QuickHS(KEY, "HS256")
    signed = jwt.encode({"sub": "ann", "aud": "elsewhere"}, KEY, algorithm="HS256")
    assert quick.claims(signed, require_sub=True) is None
    other_key = jwt.encode({"sub": "ann"}, KEY + "!", algorithm="HS256")
    assert quick.claims(other_key, require_sub=True) is None
    with_kid = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256", headers={"kid": "k1"})
    assert quick.claims(with_kid, require_sub=True) is None
    long_header = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256", headers={"typ": "x" * 200})
    assert quick.claims(long_header, require_sub=True) is None  # not parsed unsigned
    assert _pyjwt(long_header, require_sub=True) is not None
    good = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256")
    respelled = good[:-1] + _ALPHABET[_ALPHABET.index(good[-1]) ^ 1]  # same bytes decoded
    assert quick.claims(good, require_sub=True) is not None
    assert quick.claims(respelled, require_sub=True) is None


def test_time_claims_are_left_to_the_verifier() -> None:
    expired = jwt.encode({"sub": "ann", "exp": int(time.time()) - 10}, KEY, algorithm="HS256")
    assert QuickHS(KEY, "HS256").claims(expired, require_sub=True) is not None
    with pytest.raises(Unauthorized, match="token expired"):
        TokenVerifier(KEY, "HS256", "subscriber").subscriber(expired)


def test_a_token_nested_too_deep_is_refused_not_a_crash() -> None:
    deep = _b64(b"[" * 5000) + "." + _b64(b"{}") + ".AAAA"
    assert QuickHS(KEY, "HS256").claims(deep, require_sub=True) is None
    with pytest.raises(Unauthorized):
        TokenVerifier(KEY, "HS256", "subscriber").subscriber(deep)


@settings(max_examples=300, deadline=None)
@given(text=st.text(ANY_CHARACTER, max_size=60))
def test_the_quick_path_never_raises(text: str) -> None:
    good = jwt.encode({"sub": "ann"}, KEY, algorithm="HS256")
    quick = QuickHS(KEY, "HS256")
    for token in (text, good + text, text + good, good[:30] + text + good[30:]):
        assert quick.claims(token, require_sub=True) in (None, {"sub": "ann"})


def test_a_failure_inside_the_quick_path_leaves_the_token_to_pyjwt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(segment: bytes) -> bytes:
        raise RuntimeError("a fault of the quick path's own")

    monkeypatch.setattr(quickjwt, "_decoded", broken)
    good = mint(KEY, "HS256", sub="ann", topics=["news"])
    assert QuickHS(KEY, "HS256").claims(good, require_sub=True) is None
    assert TokenVerifier(KEY, "HS256", "subscriber").subscriber(good).user == "ann"
