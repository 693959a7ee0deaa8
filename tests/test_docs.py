"""The README and docs/ say what the code does: imports that work, every kind, every status."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import agentrt
from agentrt.spec import KINDS
from agentrt.state import RUN_STATUSES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def _imports(block: str) -> list[ast.Import | ast.ImportFrom]:
    # Snippets use `await` and `async with` at the top, as in an async function.
    tree = compile(block, "<doc>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert isinstance(tree, ast.Module)
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_import_a_page_shows_works(page: Path) -> None:
    for block in _python_blocks(page):
        for node in _imports(block):
            statement = ast.unparse(node)
            if statement.startswith(("from agentrt", "import agentrt")):
                exec(statement, {})  # raises ImportError if the docs promise a missing name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_errors_the_docs_name_are_importable_from_agentrt(page: Path) -> None:
    for name in re.findall(r"raises? `?([A-Z]\w+)`?", page.read_text()):
        assert name in agentrt.__all__, f"{page.name} names {name}: export it from agentrt"


def _concept(term: str) -> str:
    """The README's Concepts row for ``term``."""
    readme = (ROOT / "README.md").read_text()
    row = re.search(rf"^\| \*\*{term}\*\* \|(.*)$", readme, re.MULTILINE)
    assert row, f"README has no concept row for {term}"
    return row.group(1)


def test_readme_names_every_run_status_and_only_those() -> None:
    statuses = set(re.findall(r"`([a-z_]+)`", _concept("run").split("Statuses:", 1)[1]))
    assert statuses == set(RUN_STATUSES)


def test_readme_and_reference_name_every_kind() -> None:
    named = re.findall(r"`([A-Z]\w+)`", _concept("resource"))
    assert set(KINDS) <= set(named)
    envelope = re.search(r"^kind: (.*)$", (ROOT / "docs" / "resources.md").read_text(), re.M)
    assert envelope and envelope.group(1).split(" | ") == list(KINDS)
