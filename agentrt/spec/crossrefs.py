"""Cross-reference checks: every name a resource mentions must exist.

Also the checks of a Team's graph (cycles, reachability, names of nodes and
state keys), which the schema alone cannot express.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from agentrt._text import with_article
from agentrt.errors import SpecError, SpecIssue
from agentrt.spec.loader import Loaded
from agentrt.spec.resources import Agent, Model, Query, Resource, Team, Tool
from agentrt.spec.team import members_of, team_issues

__all__ = ["ResourceKey", "check_references", "key_of"]

ResourceKey = tuple[str, str, str]  # (kind, namespace, name)


def key_of(resource: Resource) -> ResourceKey:
    """The identity of a resource: kind, namespace and name."""
    return (resource.kind, resource.namespace, resource.name)


def _references(resource: Resource) -> Iterable[tuple[tuple[str | int, ...], str, str]]:
    """(field location, kind, name) for each reference the resource makes."""
    if isinstance(resource, Agent):
        yield ("spec", "model"), "Model", resource.spec.model
        for i, tool in enumerate(resource.spec.tools):
            yield ("spec", "tools", i), "Tool", tool
        if resource.spec.memory.session.summary_model is not None:
            loc = ("spec", "memory", "session", "summary_model")
            yield loc, "Model", resource.spec.memory.session.summary_model
        routing = resource.spec.routing
        for i, rule in enumerate(routing.rules if routing else ()):
            yield ("spec", "routing", "rules", i, "model"), "Model", rule.model
        for i, tier in enumerate(routing.tiers if routing else ()):
            yield ("spec", "routing", "tiers", i), "Model", tier
    elif isinstance(resource, Model):
        for i, name in enumerate(resource.spec.fallbacks):
            yield ("spec", "fallbacks", i), "Model", name
    elif isinstance(resource, Query):
        yield ("spec", "target"), "Agent", resource.spec.target
    elif isinstance(resource, Tool) and resource.spec.agent is not None:
        yield ("spec", "agent", "agent"), "Agent", resource.spec.agent.agent
    elif isinstance(resource, Team):
        yield from members_of(resource.spec)


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _defined_twice(items: list[Loaded]) -> list[SpecIssue]:
    """An issue for each resource defined again, differently, in the same set of files.

    Applied in order, the later definition would silently replace the earlier one;
    the same definition twice is one resource stated twice, and harmless.
    """
    first: dict[ResourceKey, Loaded] = {}
    issues: list[SpecIssue] = []
    for item in items:
        key = key_of(item.resource)
        earlier = first.setdefault(key, item)
        if earlier is item or earlier.resource == item.resource:
            continue
        where = earlier.file if earlier.line is None else f"{earlier.file}:{earlier.line}"
        kind, namespace, name = key
        issues.append(
            SpecIssue(
                item.file,
                f"{kind}/{name}",
                "metadata.name",
                f"{kind} {name!r} of namespace {namespace!r} is defined twice, differently "
                f"(also at {where})",
                "keep one definition, or give one of them another name",
                item.line_of(("metadata", "name")),
            )
        )
    return issues


def check_references(loaded: Iterable[Loaded], known: Collection[ResourceKey] = ()) -> None:
    """Raise a SpecError naming every resource defined twice (differently) and every
    reference to one that is not defined.

    ``known`` holds resources that exist already (in the store), besides ``loaded``.
    """
    items = list(loaded)
    defined = set(known) | {key_of(item.resource) for item in items}
    issues = _defined_twice(items)
    for item in items:
        res = item.resource
        if isinstance(res, Team):
            issues += team_issues(item)
        for loc, kind, name in _references(res):
            if (kind, res.namespace, name) in defined:
                continue
            same_kind = [n for (k, ns, n) in defined if k == kind and ns == res.namespace]
            close = difflib.get_close_matches(name, same_kind, n=1)
            fix = (
                f"did you mean {close[0]!r}?"
                if close
                else f"define {with_article(kind)} named {name!r} in namespace {res.namespace!r}"
                f" (apply it together with this file), or remove the reference"
            )
            issues.append(
                SpecIssue(
                    item.file,
                    f"{res.kind}/{res.name}",
                    _path(loc),
                    f"{kind} {name!r} not found in namespace {res.namespace!r}",
                    fix,
                    item.line_of(loc),
                )
            )
    if issues:
        raise SpecError(issues)
