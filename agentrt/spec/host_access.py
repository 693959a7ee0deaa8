"""What in a resource reaches into the host that runs it: Python it imports, programs
it starts, environment variables and files it reads.

A resource applied from a file by the person who runs agentrt may do all of
that: it is their host. One applied over the API by a tenant may not, or a
tenant could run its own code in the server, read its secrets
(``api_key_env: OPENAI_API_KEY`` on a Model pointing at the tenant's own URL)
or its files (``${file:/etc/shadow}``). :func:`host_access` lists each such
reach, with its field, so the server refuses those its operator did not allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from agentrt.spec.callables import callable_references
from agentrt.spec.resources import Model, Resource, Tool

__all__ = ["HostAccess", "host_access"]

_REFERENCE = re.compile(r"\$\{(env|file):([^}]*)\}")

AccessKind = Literal["module", "command", "env", "file"]


@dataclass(frozen=True, slots=True)
class HostAccess:
    """One reach into the host: its kind, what it names, and the field that names it."""

    kind: AccessKind
    value: str
    field: tuple[str | int, ...]


def host_access(resource: Resource) -> list[HostAccess]:
    """Every reach into the host ``resource`` makes, in field order."""
    found = [
        HostAccess("module", ref.partition(":")[0], loc)
        for loc, ref, _ in callable_references(resource)
    ]
    if isinstance(resource, Model) and resource.spec.api_key_env:
        found.append(HostAccess("env", resource.spec.api_key_env, ("spec", "api_key_env")))
    if isinstance(resource, Tool):
        found += _tool_access(resource)
    body = resource.model_dump(mode="json", exclude_defaults=True)
    found += list(_references(body, ()))
    return found


def _tool_access(tool: Tool) -> Iterator[HostAccess]:
    spec = tool.spec
    if spec.mcp is not None and spec.mcp.command:
        yield HostAccess("command", spec.mcp.command[0], ("spec", "mcp", "command"))
    for i, name in enumerate(spec.permissions.env):
        yield HostAccess("env", name, ("spec", "permissions", "env", i))
    for i, path in enumerate(spec.permissions.read_paths):
        yield HostAccess("file", path, ("spec", "permissions", "read_paths", i))


def _references(value: Any, loc: tuple[str | int, ...]) -> Iterator[HostAccess]:
    """``${env:NAME}`` and ``${file:PATH}`` anywhere in a resource's strings."""
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            kind: AccessKind = "env" if match.group(1) == "env" else "file"
            yield HostAccess(kind, match.group(2), loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _references(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _references(item, (*loc, i))
