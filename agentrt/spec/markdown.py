"""Render the field reference of every resource kind as Markdown (docs/resources.md)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agentrt.spec.resources import KINDS

__all__ = ["render_reference"]

_INTRO = """\
# Resource reference

Generated from the resource models by `python -m agentrt.spec.markdown`; a test
keeps it current. Every resource has the same envelope:

```yaml
apiVersion: agentrt.dev/v1
kind: {kinds}
metadata:
  name: lower-case-name        # letters, digits, '.', '_', '-'
  namespace: default           # the tenant
  labels: {{}}
spec: ...                      # below, per kind
```

Unknown fields are errors (a typo is reported with a suggestion, never ignored).

A resource file is read as untrusted input, each rule an error with the file and
the line:

- UTF-8 text of at most 1 MiB per file;
- plain data only: mappings, lists, strings, numbers, booleans, null and dates;
  a tag that builds something else (`!!python/...`, `!!binary`, `!!set`, a
  local `!tag`) is refused (`!!str` and the like are fine);
- nesting at most 100 levels deep and at most 50,000 values per file, aliases
  counted each time they are used (anchors and `<<:` merges work; "billion
  laughs" are refused before anything expands);
- a key given twice in one mapping (YAML would silently keep the last);
- a name listed twice in a list of names: `tools`, `fallbacks`, `on_tools`,
  `mcp.tools`, `env`, `read_paths`, `tags`, a route's `members`, a node's
  `after`, a team's `entry`, an Agent's `routing.tiers`;
- the same resource (kind, namespace, name) defined twice, differently, in one
  `apply` (the later would silently replace the earlier);
- a Tool's `input_schema` that is not valid JSON Schema (checked against the
  metaschema of its `$schema`, draft 2020-12 when absent) or not `type: object`,
  and an Agent's `routing.check.json_schema` that is not valid JSON Schema.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # a validated type (e.g. Regex): name what it holds
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(defaults below)"
        return f"`{value!r}`"
    if info.default is PydanticUndefined:
        return ""
    return f"`{info.default!r}`"


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every model reachable from its fields, in first-seen order."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for inner in _nested(info.annotation):
                visit(inner)

    visit(root)
    return seen


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_nested(arg))
    return found


def _table(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    lines = [
        f"### {model.__name__}",
        "",
        doc,
        "",
        "| field | type | default | notes |",
        "|---|---|---|---|",
    ]
    for name, info in model.model_fields.items():
        notes = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {notes} |")
    return "\n".join(lines)


def render_reference() -> str:
    """The whole reference page."""
    parts = [_INTRO.format(kinds=" | ".join(KINDS))]
    done: set[type[BaseModel]] = set()
    for kind, cls in KINDS.items():
        spec_model = cls.model_fields["spec"].annotation
        assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
        parts.append(f"## {kind}\n")
        for model in _models(spec_model):
            if model in done:
                continue
            done.add(model)
            parts.append(_table(model) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_reference(), end="")
