"""Field checks the types alone cannot express: names listed once, a valid tool input schema.

Each raises a ``PydanticCustomError`` whose context says where inside the
field the problem is (``at``) and how to fix it (``fix``), so the loader can
point at the exact item and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pydantic_core import PydanticCustomError

__all__ = [
    "FIELD_CHECK",
    "JSON_SCHEMA",
    "UNIQUE",
    "field_problem",
    "tool_input_schema",
    "unique_names",
]

UNIQUE: Final = "unique_items"
"""Error type of a name listed twice."""

JSON_SCHEMA: Final = "json_schema"
"""Error type of an invalid tool input schema."""

FIELD_CHECK: Final = "field_check"
"""Error type of a field a resource's own rules refuse (see :func:`field_problem`)."""

_TYPES: Final = "array, boolean, integer, null, number, object, string"


class _Unknown:
    """What ``validator_for`` answers for a ``$schema`` it does not know."""


def unique_names(values: list[str]) -> list[str]:
    """``values`` if no name is listed twice.

    Raises:
        PydanticCustomError: At the first repeated item.
    """
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        earlier = first.setdefault(value, i)
        if earlier != i:
            raise PydanticCustomError(
                UNIQUE,
                "{message}",
                {
                    "message": f"{value!r} is listed more than once (as items {earlier} and {i})",
                    "at": [i],
                    "fix": "list each name once",
                },
            )
    return values


def field_problem(message: str, at: Sequence[str | int], fix: str) -> PydanticCustomError:
    """The error of a value a model's check refuses: ``at`` is where it is, below the
    model that raises it (``["when", 1, "value"]``), and ``fix`` what to change."""
    return PydanticCustomError(
        FIELD_CHECK, "{message}", {"message": message, "at": list(at), "fix": fix}
    )


def _problem(message: str, at: Sequence[str | int], fix: str) -> PydanticCustomError:
    return PydanticCustomError(
        JSON_SCHEMA, "{message}", {"message": message, "at": list(at), "fix": fix}
    )


def tool_input_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` if it is a valid JSON Schema of an object of named arguments.

    Checked against the metaschema of its ``$schema`` draft (2020-12 when
    absent) with the ``jsonschema`` library, the reference implementation, and
    required to be ``type: object``: model APIs call tools with an object of
    named arguments and refuse any other schema.

    Raises:
        PydanticCustomError: Where in the schema it is invalid, and how to fix it.
    """
    if schema is None:
        return None
    # Imported here: only specs with an input_schema pay for it.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    draft = schema.get("$schema")
    cls: Any = Draft202012Validator
    if draft is not None:
        # The sentinel default (not a validator) tells an unknown $schema from a known one.
        known = (
            validator_for(schema, default=_Unknown)  # type: ignore[arg-type]
            if isinstance(draft, str)
            else _Unknown
        )
        if known is _Unknown:
            raise _problem(
                f"unknown `$schema` {draft!r}",
                ["$schema"],
                "remove `$schema` (draft 2020-12 is used), or name a JSON Schema draft's URI",
            )
        cls = known
    checker = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    error = best_match(checker.iter_errors(schema))
    if error is not None:
        at = list(error.absolute_path)
        fix = (
            f"use one of: {_TYPES} (or a list of them)"
            if at and at[-1] == "type"
            else "make it valid JSON Schema (see https://json-schema.org)"
        )
        raise _problem(f"not a valid JSON Schema: {error.message}", at, fix)
    if schema.get("type") != "object":
        raise _problem(
            "a tool's input must be an object of named arguments",
            ["type"] if "type" in schema else [],
            "set `type: object` and describe the arguments under `properties`",
        )
    return schema
