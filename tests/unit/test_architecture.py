"""The layout stays walkable: small modules, small classes, and no import cycles (the
layers themselves are import-linter's contracts, run by `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

from tests.support.paths import ROOT

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
SOURCES = sorted((ROOT / "hub").rglob("*.py"))


def _classes(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in SOURCES
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_class_is_over_200_lines() -> None:
    long = {
        f"{path.relative_to(ROOT)}:{name}": lines
        for path in SOURCES
        for name, lines in _classes(path)
        if lines > MAX_CLASS_LINES
    }
    assert long == {}


def test_no_module_imports_one_that_imports_it_back() -> None:
    """Cycles through imports made only for type checking count too: they are the first
    sign of two modules that should be one, or of a concept in the wrong place."""
    graph = grimp.build_graph("hub")
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if module < imported and graph.chain_exists(imported, module):
                chain = graph.find_shortest_chain(imported, module)
                cycles.append(" -> ".join([module, *(chain or ())]))
    assert cycles == []


def test_the_checks_see_the_whole_package() -> None:
    names = {str(path.relative_to(ROOT / "hub")) for path in SOURCES}
    assert {"broker/live.py", "delivery/subscription.py", "http/front.py"} <= names
    assert any(lines > 100 for _, lines in _classes(ROOT / "hub" / "broker" / "live.py"))
