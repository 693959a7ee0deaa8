"""Load resources from YAML files and turn every problem into a precise SpecIssue.

The YAML itself is read by :mod:`agentrt.spec._yaml`: plain data only, in
bounded time and memory, with duplicate keys refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agentrt.errors import SpecError, SpecIssue
from agentrt.spec._checks import FIELD_CHECK, JSON_SCHEMA, UNIQUE
from agentrt.spec._yaml import parse_documents, read_file
from agentrt.spec.resources import API_VERSION, KINDS, Resource

__all__ = ["Loaded", "iter_resource_files", "load_paths", "load_text", "parse_resource"]

_SUFFIXES = (".yaml", ".yml")


class Loaded(NamedTuple):
    """A resource and where it came from, so later checks can point at the file."""

    resource: Resource
    file: str
    line: int | None
    node: yaml.Node | None = None  # to find the line of any field later

    def line_of(self, loc: tuple[int | str, ...]) -> int | None:
        """1-based line of the field at ``loc`` (or of the resource, if unknown)."""
        return _line(self.node, loc) if self.node is not None else self.line


def iter_resource_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and directories (recursively, sorted) into YAML files."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        elif path.exists():
            yield path
        else:
            raise SpecError(
                [SpecIssue(str(path), "file", "", "no such file or directory", "check the path")]
            )


def load_paths(paths: Iterable[str | Path]) -> list[Loaded]:
    """Load every resource in the given files or directories; raise one SpecError for all."""
    resources: list[Loaded] = []
    issues: list[SpecIssue] = []
    for path in iter_resource_files(paths):
        try:
            resources.extend(load_text(read_file(path), str(path)))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return resources


def load_text(text: str, file: str = "<string>") -> list[Loaded]:
    """Parse a (multi-document) YAML text into validated resources."""
    resources: list[Loaded] = []
    issues: list[SpecIssue] = []
    for doc in parse_documents(text, file):
        try:
            resource = parse_resource(doc.data, file=file, document=doc.number, node=doc.node)
            resources.append(Loaded(resource, file, _line(doc.node, ()), doc.node))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return resources


def parse_resource(
    data: Any, *, file: str = "<input>", document: int = 1, node: yaml.Node | None = None
) -> Resource:
    """Validate one parsed document as a resource."""
    label = f"document {document}"
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    file,
                    label,
                    "",
                    f"expected a mapping with apiVersion/kind/metadata/spec, got {_kind_of(data)}",
                    "write the resource as `key: value` lines",
                    _line(node, ()),
                )
            ]
        )
    kind = data.get("kind")
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    label = f"{kind}/{name}" if kind and name else (f"{kind} ({label})" if kind else label)
    if kind not in KINDS:
        suggestion = difflib.get_close_matches(str(kind), list(KINDS), n=1)
        fix = f"did you mean `kind: {suggestion[0]}`?" if suggestion else ""
        fix = fix or f"use one of: {', '.join(KINDS)}"
        message = "missing `kind`" if kind is None else f"unknown kind {kind!r}"
        raise SpecError([SpecIssue(file, label, "kind", message, fix, _line(node, ("kind",)))])
    if data.get("apiVersion") != API_VERSION:
        got = data.get("apiVersion")
        raise SpecError(
            [
                SpecIssue(
                    file,
                    label,
                    "apiVersion",
                    "missing `apiVersion`" if got is None else f"unsupported apiVersion {got!r}",
                    f"set `apiVersion: {API_VERSION}`",
                    _line(node, ("apiVersion",)),
                )
            ]
        )
    cls: type[BaseModel] = KINDS[kind]
    try:
        resource = cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            [_pydantic_issue(err, cls, file, label, node) for err in exc.errors()]
        ) from None
    return resource  # type: ignore[return-value]


# --- turning errors into issues -----------------------------------------------------


def _pydantic_issue(
    err: ErrorDetails, cls: type[BaseModel], file: str, label: str, node: yaml.Node | None
) -> SpecIssue:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _OWN_CHECKS:  # our checks say where inside the field, and the fix
        loc += tuple(ctx["at"])
    # Discriminated/tagged unions add the tag to the location; drop it from the path.
    path = field_path(loc)
    field = str(loc[-1]) if loc else ""
    if kind == "missing":
        message = f"missing required field `{field}`"
        fix = f"add `{field}: ...`" + _describe(cls, loc)
    elif kind == "extra_forbidden":
        known = _known_fields(cls, loc[:-1])
        close = difflib.get_close_matches(field, known, n=1)
        message = f"unknown field `{field}`"
        fix = (
            f"did you mean `{close[0]}`?"
            if close
            else f"remove it; allowed here: {', '.join(known) or 'nothing'}"
        )
    elif kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        message = f"{err['input']!r} is not allowed"
        fix = f"use one of: {expected}"
    elif kind == "string_pattern_mismatch":
        message = f"{err['input']!r} is not a valid value"
        fix = _pattern_fix(field)
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.removesuffix("_type").removesuffix("_parsing").replace("_", " ")
        expected = _TYPE_WORDS.get(expected, expected)
        message = f"expected {_article(expected)} {expected}, got {_kind_of(err['input'])}"
        message += f" {err['input']!r}" if not isinstance(err["input"], dict | list) else ""
        fix = f"give `{field}` {_article(expected)} {expected} value"
    elif kind in _OWN_CHECKS:
        message = str(err["msg"])
        fix = str(ctx["fix"])
    elif kind == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ")
        fix = "change the value as the message says"
    else:
        message = str(err["msg"])
        fix = f"change `{field or 'the value'}` so that it {str(err['msg']).lower()}"
    return SpecIssue(file, label, path, message, fix, _line(node, loc))


_OWN_CHECKS = (UNIQUE, JSON_SCHEMA, FIELD_CHECK)  # each error says where, and its fix
_TYPE_WORDS = {"int": "integer", "float": "number", "bool": "boolean", "dict": "mapping"}


def _pattern_fix(field: str) -> str:
    if field in ("name", "namespace"):
        return "use lower-case letters, digits, '.', '_' or '-' (at most 63 characters)"
    if field in ("callable", "lookup") or field.startswith(("before_", "after_", "on_")):
        return "write it as `package.module:function`"
    return "see docs/resources.md for the expected format"


def _describe(cls: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model = _model_at(cls, loc[:-1])
    if model is None or not loc:
        return ""
    info = model.model_fields.get(str(loc[-1]))
    if info is not None and info.description:
        return f" ({info.description})"
    return ""


def _known_fields(cls: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    model = _model_at(cls, loc)
    return sorted(model.model_fields) if model is not None else []


def _model_at(cls: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Walk field annotations along ``loc`` to the model that holds the last field."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The model type inside ``X | None`` or ``list[X]``, else the annotation itself."""
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def field_path(loc: tuple[int | str, ...]) -> str:
    """A field location as written in messages: ``spec.nodes[2].after[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node found along ``loc``."""
    if node is None:
        return None
    current = node
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            for key, value in current.value:
                if getattr(key, "value", None) == part:
                    child = value
                    break
        elif (
            isinstance(current, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(current.value)
        ):
            child = current.value[part]
        if child is None:
            break
        current = child
    return int(current.start_mark.line) + 1


def _kind_of(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
