"""Resource files as YAML: plain data only, read in bounded time and memory.

A resource file is untrusted input. It is read as UTF-8 text of at most
:data:`MAX_FILE_BYTES`; it may hold only plain data (mappings, lists, strings,
numbers, booleans, null, dates), never a tag that builds objects; nesting is at
most :data:`MAX_DEPTH` levels and a file at most :data:`MAX_NODES` values, with
every use of an alias counted (so "billion laughs" aliases are refused before
anything expands them); a key given twice in one mapping is an error, not a
silent overwrite. Every problem is a :class:`SpecIssue` with the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, NamedTuple, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agentrt.errors import SpecError, SpecIssue

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Document",
    "parse_documents",
    "read_file",
]

MAX_FILE_BYTES: Final = 1024 * 1024
"""Largest resource file read: 1 MiB, about what Kubernetes allows one object."""

MAX_DEPTH: Final = 100
"""Deepest nesting of mappings and lists, aliases expanded."""

MAX_NODES: Final = 50_000
"""Most values (scalars, mappings, lists) in one file, each use of an alias counted."""

_TAG_PREFIX: Final = "tag:yaml.org,2002:"
_MERGE: Final = f"{_TAG_PREFIX}merge"
# Tags SafeLoader would construct that are not plain data.
_NOT_DATA: Final = ("binary", "set", "omap", "pairs")


class Document(NamedTuple):
    """One YAML document of a file: its node (for line numbers) and its data."""

    number: int  # 1-based, in the file
    node: Node
    data: Any


class _Problem(Exception):
    """A problem found while reading a file, turned into a SpecIssue by the caller."""

    def __init__(self, message: str, fix: str, line: int | None, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.line = line
        self.field = field


def _line_of(mark: Any) -> int | None:
    return int(mark.line) + 1 if mark is not None else None


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else tag


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, bounding nesting and the number of values while it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._nodes += 1
        self._depth += 1
        try:
            if self._nodes > MAX_NODES:
                raise _Problem(
                    f"more than {MAX_NODES:,} values in one file",
                    "split the resources into several files",
                    self._next_line(),
                )
            if self._depth > MAX_DEPTH:
                raise _Problem(
                    f"nested deeper than {MAX_DEPTH} levels",
                    "flatten the structure; resources need far fewer levels",
                    self._next_line(),
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _next_line(self) -> int | None:
        """The line of the value about to be composed."""
        return _line_of(self.peek_event().start_mark)  # type: ignore[no-untyped-call]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
            raise _Problem(
                f"cannot read the value: {str(exc).split(';')[0]}",
                "write a smaller number, or quote the value to make it a string",
                _line_of(node.start_mark),
            ) from None

    def construct_undefined(self, node: Node) -> Any:
        raise _Problem(
            f"the tag {_shown_tag(node.tag)} is not allowed: resource files hold plain data",
            "remove the tag; write the value as a string, number, list or mapping",
            _line_of(node.start_mark),
        )


for _name in _NOT_DATA:
    _Loader.add_constructor(f"{_TAG_PREFIX}{_name}", _Loader.construct_undefined)
_Loader.add_constructor(None, _Loader.construct_undefined)


def read_file(path: Path) -> str:
    """The text of a resource file.

    Raises:
        SpecError: It cannot be read, is larger than :data:`MAX_FILE_BYTES`, or
            is not UTF-8.
    """
    file = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _error(file, f"cannot read it: {exc.strerror or exc}", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise _error(
            file,
            "larger than 1 MiB, the most one resource file may be",
            "split the resources into several files, and keep long texts shorter",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(
            file,
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} cannot be decoded",
            "save the file as UTF-8",
            line,
        ) from None


def _error(file: str, message: str, fix: str, line: int | None = None) -> SpecError:
    return SpecError([SpecIssue(file, "file", "", message, fix, line)])


def parse_documents(text: str, file: str) -> list[Document]:
    """Parse a (multi-document) YAML text into checked plain data.

    Raises:
        SpecError: The text is not YAML, breaks a limit, uses a tag or repeats a
            key; every duplicate key of the file is reported.
    """
    if len(text) > MAX_FILE_BYTES:  # text given directly, not read by read_file
        raise _error(file, "longer than 1 MiB of text", "split the resources into several files")
    documents: list[Document] = []
    issues: list[SpecIssue] = []
    budget = MAX_NODES
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader checks every character first
        raise SpecError([_yaml_issue(exc, file, text)]) from None
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            label = _label(node, index)
            try:
                budget -= _check_tree(node)
            except _Problem as problem:
                issues.append(
                    SpecIssue(
                        file, label, problem.field, problem.message, problem.fix, problem.line
                    )
                )
                continue
            duplicates = _duplicate_keys(node, file, label)
            if duplicates:
                issues.extend(duplicates)
                continue
            if budget < 0:
                raise _Problem(
                    f"more than {MAX_NODES:,} values in one file, aliases expanded",
                    "split the resources into several files, or use fewer aliases",
                    _line_of(node.start_mark),
                )
            documents.append(Document(index, node, loader.construct_document(node)))
    except _Problem as problem:
        issues.append(SpecIssue(file, "file", "", problem.message, problem.fix, problem.line))
    except yaml.YAMLError as exc:
        issues.append(_yaml_issue(exc, file, text))
    finally:
        loader.dispose()
    if issues:
        raise SpecError(issues)
    return documents


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_tree(root: Node) -> int:
    """The number of values in ``root`` with aliases expanded, if within the limits.

    Computed once per distinct node (aliases share nodes), so a document that
    would expand to billions of values is measured without expanding it.

    Raises:
        _Problem: Too many values, nested too deep, or an alias inside the node
            it names (a recursive structure).
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            parts = [measured[id(child)] for child in _children(node)]
            values = 1 + sum(v for v, _ in parts)
            depth = 1 + max((d for _, d in parts), default=0)
            if values > MAX_NODES:
                raise _Problem(
                    f"more than {MAX_NODES:,} values, aliases expanded",
                    "use fewer aliases (each use of one counts all it holds)",
                    _line_of(node.start_mark),
                )
            if depth > MAX_DEPTH:
                raise _Problem(
                    f"nested deeper than {MAX_DEPTH} levels, aliases expanded",
                    "flatten the structure; resources need far fewer levels",
                    _line_of(node.start_mark),
                )
            measured[key] = (values, depth)
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise _Problem(
                "an alias refers to a mapping or list that contains it (a recursive value)",
                "write the value out instead of referring to the node it is in",
                _line_of(node.start_mark),
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)
    return measured[id(root)][0]


def _duplicate_keys(root: Node, file: str, label: str) -> list[SpecIssue]:
    """A SpecIssue for every key given twice in one mapping (each shared node checked once)."""
    issues: list[SpecIssue] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
            continue
        if not isinstance(node, MappingNode):
            continue
        first: dict[tuple[str, str], ScalarNode] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                continue
            field = f"{path}.{key.value}" if path else str(key.value)
            stack.append((value, field))
            if key.tag == _MERGE:
                continue  # `<<: *defaults` merges; its keys may be overridden
            earlier = first.setdefault((key.tag, key.value), key)
            if earlier is not key:
                issues.append(
                    SpecIssue(
                        file,
                        label,
                        field,
                        f"duplicate key `{key.value}` (first at line "
                        f"{earlier.start_mark.line + 1}); YAML would keep only the last",
                        f"give `{key.value}` once",
                        _line_of(key.start_mark),
                    )
                )
    issues.sort(key=lambda issue: issue.line or 0)
    return issues


def _child(node: Node | None, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return cast(Node, v)
    return None


def _label(node: Node, index: int) -> str:
    """The resource a document defines, as in messages: ``Agent/bot``, else ``document 2``."""
    kind, name = _child(node, "kind"), _child(_child(node, "metadata"), "name")
    kind_text = kind.value if isinstance(kind, ScalarNode) else None
    if kind_text and isinstance(name, ScalarNode):
        return f"{kind_text}/{name.value}"
    return f"{kind_text} (document {index})" if kind_text else f"document {index}"


def _yaml_issue(exc: yaml.YAMLError, file: str, text: str) -> SpecIssue:
    mark = getattr(exc, "problem_mark", None)
    line = _line_of(mark)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return SpecIssue(
            file,
            "file",
            "",
            f"invalid YAML: character #x{exc.character:04x} is not allowed in YAML text"
            if isinstance(exc.character, int)
            else f"invalid YAML: {exc.reason}",
            "remove control characters; write them as escapes in a double-quoted string",
            line,
        )
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    fix = "check indentation and quoting near this line; a value with ': ' needs quotes"
    if mark is not None:
        message += f" at column {mark.column + 1}"
    return SpecIssue(file, "file", "", message, fix, line)
