"""Mercure topics and topic matchers: exact IRIs, `*`, RFC 6570 URI templates (classic
`topic=`) and URL patterns (Mercure 1.0 `match_urlpattern=`).

Matchers run on attacker-chosen input, so none of them can backtrack: a URI
template becomes an RE2 expression (linear time), a URL pattern is compiled by
`urlpattern` (Rust's regex, linear time too). Templates match as the reference
hub matches them: `{var}` stands for one unreserved-or-percent-encoded value (it
never crosses a `/`), `{+var}` and `{#var}` for reserved characters as well, and
`{/var}`, `{.var}`, `{;var}`, `{?var}`, `{&var}` for their operator's expansion.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import re2
import urlpattern

from hub.errors import BadRequest

ANY = "*"
MAX_TOPIC_LENGTH = 2048
# C0, DEL and C1 controls: never in a topic, a matcher or an id (the spec's rule).
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_UNRESERVED = r"A-Za-z0-9\-._~"
_RESERVED = _UNRESERVED + r":/?#\[\]@!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
# operator -> (what starts the expansion, the characters a value may hold)
_OPERATORS: dict[str, tuple[str, str]] = {
    "": ("", _UNRESERVED + ","),
    "+": ("", _RESERVED),
    "#": ("#", _RESERVED),
    ".": (r"\.", _UNRESERVED + ","),
    "/": ("/", _UNRESERVED + ",/"),
    ";": (";", _UNRESERVED + ",;="),
    "?": (r"\?", _UNRESERVED + ",&="),
    "&": ("&", _UNRESERVED + ",&="),
}
_VARIABLE = re.compile(r"(?:[A-Za-z0-9_.]|%[0-9A-Fa-f]{2})+(?::[1-9][0-9]{0,3}|\*)?")

Matcher = Callable[[str], bool]


def check_text(value: str, what: str) -> str:
    """A topic or matcher as the spec allows it: not empty, no control character, bounded."""
    if not value:
        raise BadRequest(f"{what} must not be empty")
    if len(value) > MAX_TOPIC_LENGTH:
        raise BadRequest(f"{what} is longer than {MAX_TOPIC_LENGTH} characters")
    if CONTROLS.search(value):
        raise BadRequest(f"{what} must not hold control characters")
    return value


def template_regex(template: str) -> str:
    """The RE2 expression a URI template matches with (ValueError if it is not one)."""
    parts: list[str] = []
    position = 0
    for expression in _EXPRESSION.finditer(template):
        parts.append(_literal(template[position : expression.start()]))
        body = expression.group(1)
        operator = body[:1] if body[:1] in "+#./;?&" else ""
        names = body[len(operator) :].split(",")
        if not all(_VARIABLE.fullmatch(name) for name in names):
            raise ValueError(f"not a URI template expression: {{{body}}}")
        start, allowed = _OPERATORS[operator]
        parts.append(f"(?:{start}(?:[{allowed}]|{_PCT})*)?")
        position = expression.end()
    parts.append(_literal(template[position:]))
    return "".join(parts)


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError("unbalanced braces")
    return re.escape(text)


def _template(template: str) -> Matcher:
    try:
        compiled = re2.compile(template_regex(template))
    except (ValueError, re2.error) as exc:
        raise BadRequest(f"topic selector {template!r} is not a URI template ({exc})") from None
    return lambda topic: compiled.fullmatch(topic) is not None


def _url_pattern(pattern: str, base: str) -> Matcher:
    try:
        compiled = urlpattern.URLPattern(pattern, base) if base else urlpattern.URLPattern(pattern)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{pattern!r} is not a URL pattern ({exc})") from None

    def test(topic: str) -> bool:
        try:
            return bool(compiled.test(urljoin(base, topic) if base else topic))
        except (ValueError, TypeError):  # a topic that is no URL matches no pattern
            return False

    return test


@dataclass(frozen=True, slots=True)
class Selector:
    """One topic matcher: its kind (`exact`, `template`, `urlpattern`), its text, and the
    test. `*` is every topic whatever the kind (the spec reserves it)."""

    kind: str
    text: str
    test: Matcher

    @property
    def everything(self) -> bool:
        return self.text == ANY

    @property
    def exact(self) -> bool:
        return self.kind == "exact" and self.text != ANY


def _everything(_topic: str) -> bool:
    return True


def selector(text: str, kind: str = "classic", base: str = "") -> Selector:
    """A matcher from a request or a token. `classic`: a `topic=` selector (a template when
    it holds `{`, else exact); `exact`; `urlpattern` (relative ones against `base`, the
    hub's URL)."""
    check_text(text, "a topic selector")
    if text == ANY:
        return Selector("exact", ANY, _everything)
    if kind == "classic":
        kind = "template" if "{" in text else "exact"
    if kind == "exact":
        return Selector(kind, text, text.__eq__)
    if kind == "template":
        return Selector(kind, text, _template(text))
    if kind == "urlpattern":
        return Selector(kind, text, _url_pattern(text, base))
    raise BadRequest(f"unknown matcher type {kind!r}")


def matches_any(selectors: tuple[Selector, ...], topics: tuple[str, ...]) -> bool:
    return any(s.test(topic) for s in selectors for topic in topics)


def check_publishable(topic: str) -> None:
    """A topic a URL parser reads as it is written: no dot segments (`..`, `.`, also
    percent-encoded) and no backslash. Else URL patterns, which match parsed URLs, and
    templates, which match the text, would disagree on where an update belongs, and a
    grant on one path would publish to another."""
    if "\\" in topic or _DOT_SEGMENT.search(topic):
        raise BadRequest(f"topic {topic[:200]!r} has dot segments or a backslash")


# A path segment of only dots, as written or percent-encoded (`%2e`), in any case.
_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:[/?#]|$)", re.IGNORECASE)


def reserved(topic: str, hub_url: str) -> bool:
    """Whether `topic` addresses the hub's own namespace (`/.well-known/mercure…`) on any
    host, however its path is spelled (percent-encoded, doubled slashes, dot segments)."""
    path = urlsplit(urljoin(hub_url or "http://hub.invalid/", topic.replace("\\", "/"))).path
    path = "/" + "/".join(part for part in unquote(path).split("/") if part)
    path = posixpath.normpath(path)
    return path == "/.well-known/mercure" or path.startswith("/.well-known/mercure/")
