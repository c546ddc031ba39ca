"""README's "Clients" section quotes the snippets `make test` runs, word for word: a
snippet changed in one place and not the other fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import ROOT

SNIPPETS = sorted(
    path
    for path in (ROOT / "examples" / "clients").iterdir()
    if path.suffix in {".py", ".js", ".mjs"} and path.name != "__init__.py"
)


def _clients_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Clients\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_every_client_library_has_a_snippet() -> None:
    assert {p.name for p in SNIPPETS} == {
        "browser.js",
        "eventsource.mjs",
        "fetch-event-source.mjs",
        "httpx_sse.py",
        "sseclient_py.py",
        "aiohttp_sse_client2.py",
    }


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda p: p.name)
def test_readme_quotes_the_snippet_whole(snippet: Path) -> None:
    lang = "python" if snippet.suffix == ".py" else "js"
    block = f"```{lang}\n{snippet.read_text().rstrip()}\n```\n"
    assert block in _clients_section(), f"README's Clients section does not quote {snippet.name}"
