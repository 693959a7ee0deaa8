"""The apply-time check that every ``module:function`` a resource names imports.

A Tool's ``callable`` and ``lookup`` and an Agent's hooks are imported when a run
starts; checking them at apply reports a typo or a module that is not on the path
before anything is stored, in the loader's file/field/fix form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agentrt._imports import CallableNotFound, import_callable
from agentrt.errors import SpecError, SpecIssue
from agentrt.spec.loader import Loaded, field_path
from agentrt.spec.resources import Agent, Hooks, Resource, Tool

__all__ = ["callable_references", "check_callables"]


def callable_references(
    resource: Resource,
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(field location, reference, what it is) for each callable the resource names."""
    if isinstance(resource, Tool):
        if resource.spec.callable:
            yield ("spec", "callable"), resource.spec.callable, f"Tool {resource.name}"
        if resource.spec.lookup:
            yield ("spec", "lookup"), resource.spec.lookup, f"Tool {resource.name} lookup"
    elif isinstance(resource, Agent):
        for phase in Hooks.model_fields:
            reference = getattr(resource.spec.hooks, phase)
            if reference:
                yield ("spec", "hooks", phase), reference, f"hook {phase}"


def check_callables(loaded: Iterable[Loaded]) -> None:
    """Raise a SpecError naming every ``module:function`` reference that does not import.

    Importing runs the module's top-level code, as the run that uses it would.
    """
    issues: list[SpecIssue] = []
    for item in loaded:
        res = item.resource
        for loc, reference, what in callable_references(res):
            try:
                import_callable(reference, what=what)
            except CallableNotFound as exc:
                issues.append(
                    SpecIssue(
                        item.file,
                        f"{res.kind}/{res.name}",
                        field_path(loc),
                        f"{reference!r}: {exc.problem}",
                        exc.fix,
                        item.line_of(loc),
                    )
                )
    if issues:
        raise SpecError(issues)
