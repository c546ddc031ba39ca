"""Topic matchers: exact, `*`, URI templates (RE2) and URL patterns, and what they refuse."""

from __future__ import annotations

import pytest

from hub.errors import BadRequest
from hub.mercure.topics import check_publishable, reserved, selector

HUB = "https://hub.example/.well-known/mercure"


@pytest.mark.parametrize(
    ("template", "topic", "matches"),
    [
        ("https://example.com/books/{id}", "https://example.com/books/1", True),
        ("https://example.com/books/{id}", "https://example.com/books/a%20b", True),
        ("https://example.com/books/{id}", "https://example.com/books/1/reviews", False),
        ("https://example.com/books/{id}", "https://example.com/authors/1", False),
        ("https://example.com/{+path}", "https://example.com/a/b/c?d=e", True),
        ("https://example.com/books{/id}", "https://example.com/books/1", True),
        ("https://example.com/books{/id}", "https://example.com/books", True),
        ("https://example.com/books{?page}", "https://example.com/books?page=2", True),
        ("https://example.com/books{?page}", "https://example.com/books?page=2/x", False),
        ("https://example.com/{a}/{b}", "https://example.com/x/y", True),
        ("https://example.com/{a}.{b}", "https://example.com/x.y", True),
        ("urn:example:{kind}:{id}", "urn:example:book:1", True),
        ("https://example.com/books/{id}", "https://example.com/books/1.jsonld", True),
    ],
)
def test_uri_templates_match_as_expansions(template: str, topic: str, matches: bool) -> None:
    s = selector(template)
    assert s.kind == "template"
    assert s.test(topic) is matches


def test_exact_selectors_compare_byte_for_byte() -> None:
    s = selector("https://example.com/books/1")
    assert s.exact
    assert s.test("https://example.com/books/1")
    assert not s.test("https://example.com/books/1/")
    assert not s.test("HTTPS://example.com/books/1")


def test_the_wildcard_matches_every_topic_whatever_the_kind() -> None:
    for kind in ("classic", "exact", "urlpattern"):
        s = selector("*", kind)
        assert s.everything
        assert s.test("urn:anything")


def test_url_patterns_absolute_and_relative_to_the_hub() -> None:
    absolute = selector("https://example.com/books/:id", "urlpattern", HUB)
    assert absolute.test("https://example.com/books/7")
    assert not absolute.test("https://example.com/books/7/x")
    assert not absolute.test("not a url")
    relative = selector("/books/:id", "urlpattern", HUB)
    assert relative.test("/books/3")
    assert relative.test("https://hub.example/books/3")
    assert not relative.test("https://other.example/books/3")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://example.com/{unclosed", "classic"),
        ("https://example.com/{a b}", "classic"),
        ("https://example.com/}{", "classic"),
        ("(((", "urlpattern"),
        ("", "classic"),
        ("a\x00b", "exact"),
        ("a\x85b", "exact"),
        ("x" * 3000, "exact"),
        ("x", "regex"),
    ],
)
def test_what_is_not_a_matcher_is_a_bad_request(text: str, kind: str) -> None:
    with pytest.raises(BadRequest):
        selector(text, kind, HUB)


@pytest.mark.timeout(30)  # a backtracking engine would take years here: the test times out
def test_a_pathological_template_cannot_backtrack() -> None:
    """Expressions side by side that a backtracking engine would try every split of."""
    s = selector("https://example.com/" + "{a}" * 30 + "!")
    topic = "https://example.com/" + "a" * 2000
    for _ in range(20):
        assert not s.test(topic)


def test_the_hub_namespace_is_reserved_however_it_is_spelled() -> None:
    for spelled in (
        "/x/%2e%2e/.well-known/mercure/subscriptions/c",
        "https://hub.example/./.well-known/mercure/subscriptions/p",
        "/%2Ewell-known/mercure/x",
        "\\.well-known\\mercure\\x",
        "/.well-known/%6Dercure/x",
        "HTTP://hub.example/.well-known//mercure/q",
    ):
        assert reserved(spelled, HUB), spelled
    assert reserved("/.well-known/mercure/subscriptions/a/b", HUB)
    assert reserved("https://elsewhere.example/.well-known/mercure", HUB)
    assert reserved("../.well-known/mercure", HUB)
    assert not reserved("https://example.com/.well-known/mercure-like", HUB)
    assert not reserved("urn:example:1", HUB)


@pytest.mark.parametrize(
    "topic",
    [
        "https://e.com/a/../b",
        "https://e.com/a/./b",
        "/a/%2E%2e/b",
        "https://e.com/a\\b",
        "..",
        "./x",
    ],
)
def test_topics_a_url_parser_would_rewrite_are_not_published(topic: str) -> None:
    with pytest.raises(BadRequest):
        check_publishable(topic)


@pytest.mark.parametrize("topic", ["https://e.com/books/1", "urn:x:..", "https://e.com/.hidden/x"])
def test_topics_written_as_parsed_are_published(topic: str) -> None:
    check_publishable(topic)
