"""No module-level mutable state: state lives in objects whose owner creates and closes them.

A module-level dict, list or set that the code changes at run time is state
shared by every Runtime in the process, never closed, and invisible to the
caller (a cache of one Runtime's probes that another Runtime trusts, a lock
table that outlives its event loop). This test reads every module of the
package and fails on such a container; containers that are only read
(constant tables) are fine, and so are bounded memo caches of pure functions
(``functools.lru_cache(maxsize=N)``), which change no result.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agentrt"

_CONTAINER_CALLS = {
    "dict",
    "list",
    "set",
    "bytearray",
    "defaultdict",
    "OrderedDict",
    "Counter",
    "deque",
    "WeakValueDictionary",
    "WeakKeyDictionary",
    "WeakSet",
}
_CONTAINER_NODES = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_MUTATORS = {
    "add",
    "append",
    "appendleft",
    "clear",
    "discard",
    "extend",
    "extendleft",
    "insert",
    "pop",
    "popitem",
    "popleft",
    "remove",
    "setdefault",
    "update",
    "sort",
    "reverse",
    "move_to_end",
}
_UNBOUNDED_CACHES = {"cache", "cached_property"}


def _is_container(value: ast.expr | None) -> bool:
    if isinstance(value, _CONTAINER_NODES):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in _CONTAINER_CALLS
    return False


def _module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements that run at import: the body, and inside top-level if/try/with blocks."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If | ast.With | ast.Try):
            for block in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, block, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def _containers(tree: ast.Module) -> set[str]:
    """Names bound at module level to a mutable container."""
    names: set[str] = set()
    for node in _module_level(tree):
        if isinstance(node, ast.Assign) and _is_container(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and _is_container(node.value)
        ):
            names.add(node.target.id)
    return names


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript | ast.Attribute) and not (
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    ):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutations(tree: ast.Module, names: set[str]) -> Iterator[tuple[str, int]]:
    """Where the code changes one of ``names`` (or rebinds a global from a function)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                yield name, node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if (
                node.func.attr in _MUTATORS
                and isinstance(target, ast.Name | ast.Subscript)
                and _base_name(target) in names
            ):
                yield str(_base_name(target)), node.lineno
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript) and _base_name(target) in names:
                    yield str(_base_name(target)), node.lineno
                elif (
                    isinstance(node, ast.AugAssign)
                    and isinstance(target, ast.Name)
                    and target.id in names
                ):
                    yield target.id, node.lineno


def _unbounded_caches(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Module-level functions memoised without a bound (they grow for ever)."""
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            func = call.func if call is not None else deco
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            unbounded = name in _UNBOUNDED_CACHES or (
                name == "lru_cache"
                and (
                    call is None
                    or any(
                        k.arg == "maxsize"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is None
                        for k in call.keywords
                    )
                )
            )
            if unbounded:
                yield node.name, node.lineno


def _imported_containers(tree: ast.Module, by_module: dict[str, set[str]]) -> set[str]:
    """Containers of other agentrt modules imported here by name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in by_module:
            names |= {a.asname or a.name for a in node.names if a.name in by_module[node.module]}
    return names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _state_problems() -> list[str]:
    trees = {_module_name(p): (p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))}
    by_module = {name: _containers(tree) for name, (_, tree) in trees.items()}
    problems = []
    for name, (path, tree) in trees.items():
        watched = by_module[name] | _imported_containers(tree, by_module)
        where = path.relative_to(PACKAGE.parent)
        problems += [
            f"{where}:{line}: {var} changes at run time" for var, line in _mutations(tree, watched)
        ]
        problems += [
            f"{where}:{line}: {fn} caches without a bound" for fn, line in _unbounded_caches(tree)
        ]
    return problems


def test_the_scan_finds_module_state() -> None:
    # The scan must see what it is meant to forbid.
    tree = ast.parse(
        "import weakref\n"
        "_locks = weakref.WeakValueDictionary()\n"
        "_seen: set[str] = set()\n"
        "TABLE = {'a': 1}\n"
        "import functools\n"
        "@functools.cache\n"
        "def f(x): return x\n"
        "def g(key):\n"
        "    _seen.add(key)\n"
        "    _locks[key] = object()\n"
        "    return TABLE[key]\n"
    )
    names = _containers(tree)
    assert names == {"_locks", "_seen", "TABLE"}
    assert sorted(v for v, _ in _mutations(tree, names)) == ["_locks", "_seen"]
    assert [fn for fn, _ in _unbounded_caches(tree)] == ["f"]


def test_no_module_level_state_changes_at_run_time() -> None:
    problems = _state_problems()
    assert not problems, "module-level state (move it into an object its owner closes):\n" + (
        "\n".join(problems)
    )
