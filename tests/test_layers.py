"""Imports go one way: every module's imports, read from its source, respect the layers.

The layers, lowest first (docs/architecture.md draws them)::

    base    agentrt.errors, agentrt.settings, agentrt._*.py, agentrt.observe,
            agentrt.client (HTTP only: it needs no engine, store or spec)
    spec    agentrt.spec
    state   agentrt.state
    models  agentrt.models
    tools   agentrt.tools, agentrt.tools.sandbox
    engine  agentrt.engine
    edge    agentrt.cli, agentrt.cli.demo (and the coming agentrt.server)
    facade  agentrt (the package's own ``__init__``: the names users import)

A module may import its own layer and the layers below it, never one above.
``tools`` sits above ``models`` because a tool describes itself to a model as a
``models.base.ToolDef``; ``models`` never needs a tool. Every import counts: at
module level, inside a function, under ``TYPE_CHECKING``, and the
``"agentrt.x.y:Name"`` strings that name a class imported on first use.

Above the engine, only its public API is imported (``agentrt.engine`` and its
event names, ``agentrt.engine.events``), so the engine's modules can move and
be renamed without breaking its callers. Tools see models only through their
provider-neutral types (``models.base``). And no two packages import each other,
even where the layers allow both directions (inside one layer).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agentrt"

# Layer of each unit, lowest first; a unit is a package, or a module directly in agentrt/.
LAYERS: dict[str, int] = {
    "base": 0,
    "spec": 1,
    "state": 2,
    "models": 3,
    "tools": 4,
    "engine": 5,
    "edge": 6,
    "facade": 7,
}
UNIT_LAYER: dict[str, str] = {
    "agentrt.spec": "spec",
    "agentrt.state": "state",
    "agentrt.models": "models",
    "agentrt.tools": "tools",
    "agentrt.tools.sandbox": "tools",
    "agentrt.engine": "engine",
    "agentrt.cli": "edge",
    "agentrt.cli.demo": "edge",
    "agentrt.server": "edge",
    "agentrt.observe": "base",
    "agentrt": "facade",
}
# What code outside the engine may import of it.
ENGINE_PUBLIC = frozenset({"agentrt.engine", "agentrt.engine.events"})
# What tools may import of models: the provider-neutral types, not a provider's client.
MODELS_FOR_TOOLS = frozenset({"agentrt.models.base"})
_REFERENCE = re.compile(r"^(agentrt(?:\.\w+)+):[\w.]+$")


@dataclass(frozen=True)
class Import:
    """One import of an agentrt module by another, and where it is written."""

    importer: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    """The dotted name of a source file under the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to, or the module itself if it sits directly in agentrt/."""
    is_package = modules[module].name == "__init__.py"
    unit = module if is_package else module.rpartition(".")[0]
    return module if unit == "agentrt" and not is_package else unit


def layer_of(module: str, modules: dict[str, Path]) -> str:
    """The layer of a module, by the table above; a module directly in agentrt/ is base."""
    unit = unit_of(module, modules)
    if unit in UNIT_LAYER:
        return UNIT_LAYER[unit]
    assert unit == module and unit.count(".") == 1, (
        f"{module}: add its package {unit} to the layer table in this test and in "
        "docs/architecture.md"
    )
    return "base"


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The agentrt modules that ``module`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            # `from agentrt import _json` imports the module agentrt._json.
            subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
            targets = subs if len(subs) == len(node.names) else [source, *subs]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (match := _REFERENCE.match(node.value))
        ):
            targets = [match[1]]
        for target in targets:
            if target == "agentrt" or target.startswith("agentrt."):
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]  # `import a.b.c` of a name in a.b
                yield Import(module, target, getattr(node, "lineno", 0))


def every_import() -> list[Import]:
    """All imports between agentrt modules."""
    modules = all_modules()
    return [
        imp
        for name, path in modules.items()
        for imp in imports_of(name, path, modules)
        if imp.target != imp.importer
    ]


def test_the_import_reader_sees_every_kind_of_import() -> None:
    # The checks below are only as good as the reader: it must find an import
    # at module level, inside a function, under TYPE_CHECKING, relative, and a
    # "module:Name" reference string.
    modules = all_modules()
    found = {(i.importer, i.target) for i in every_import()}
    assert ("agentrt.tools.factory", "agentrt.tools.python") in found  # "module:Name" string
    assert ("agentrt.models", "agentrt.models.testserver") in found  # inside __getattr__
    assert ("agentrt.cli._shared", "agentrt._json") in found  # `from agentrt import _json`
    assert layer_of("agentrt.errors", modules) == "base"
    assert layer_of("agentrt.tools.sandbox.pool", modules) == "tools"


def test_no_import_runs_up_the_layers() -> None:
    modules = all_modules()
    upward = [
        f"{imp} ({layer_of(imp.importer, modules)} -> {layer_of(imp.target, modules)})"
        for imp in every_import()
        if LAYERS[layer_of(imp.target, modules)] > LAYERS[layer_of(imp.importer, modules)]
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_only_the_engine_public_api_is_imported_from_above_it() -> None:
    modules = all_modules()
    internal = [
        str(imp)
        for imp in every_import()
        if layer_of(imp.target, modules) == "engine"
        and layer_of(imp.importer, modules) != "engine"
        and imp.target not in ENGINE_PUBLIC
    ]
    assert not internal, "engine internals imported from outside it:\n" + "\n".join(internal)


def test_tools_see_models_only_through_their_provider_neutral_types() -> None:
    # Helpers two layers share (retries, proxies) live in the base layer, not
    # in one provider's client.
    modules = all_modules()
    borrowed = [
        str(imp)
        for imp in every_import()
        if layer_of(imp.importer, modules) == "tools"
        and layer_of(imp.target, modules) == "models"
        and imp.target not in MODELS_FOR_TOOLS
    ]
    assert not borrowed, "tools importing a model client:\n" + "\n".join(borrowed)


def test_no_two_packages_import_each_other() -> None:
    modules = all_modules()
    edges: dict[str, set[str]] = {}
    for imp in every_import():
        a, b = unit_of(imp.importer, modules), unit_of(imp.target, modules)
        if a != b:
            edges.setdefault(a, set()).add(b)
    cycles = _cycles(edges)
    assert not cycles, "groups of packages that import each other:\n" + "\n".join(
        ", ".join(c) for c in cycles
    )


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of units that reach each other (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (top := stack.pop()) != node:
                group.append(top)
            groups.append(sorted([node, *group]))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [g for g in groups if len(g) > 1]


def test_the_architecture_page_names_every_module() -> None:
    # docs/architecture.md names each module's job; a new module is added there.
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/.*]+)`", page))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue  # a package's re-exports
        folder = f"{relative.parent}/"
        shown = {
            path.name,
            str(relative),
            f"agentrt/{relative}",
            f"{relative.parent.name}/{path.name}",
            folder,
        }
        if path.name.startswith("_sqlite_"):
            shown.add("_sqlite_*.py")
        if not shown & named:
            missing.append(str(relative))
    assert not missing, f"docs/architecture.md does not name: {missing}"
