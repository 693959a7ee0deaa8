"""Which tools a model step offers, under names every model API accepts.

Chat Completions APIs take a tool name only if it matches
``^[a-zA-Z0-9_-]{1,64}$`` and refuse the whole request otherwise. A Tool names
its tools as it likes: an MCP server may offer ``files.read``, ``ns/echo``,
``read file`` or a 70-character name, a Tool resource may be called
``web.search``, and two Tools may offer the same name. Each model step therefore
gives every tool a *model name* (see :func:`model_names` for the rules), routes
a call of that name back to its Tool and the tool's own name, and records the
names that differ (``renamed``) with the step. Resume and replay rebuild a
recorded step from that record, never from the rules, so a run always resolves
the names its model saw.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrt.models.base import ToolDef
from agentrt.tools.base import ToolSet, Withholding

__all__ = ["MODEL_NAME", "Offer", "Route", "model_names", "offer_tools"]

MODEL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""The tool names model APIs accept (OpenAI's rule; the strictest in use)."""

_MAX = 64
_HASHED = 8  # hex digits of the hash that keeps a shortened or clashing name apart
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a model name leads: a Tool, and the tool's own name there."""

    toolset: ToolSet
    tool: str


@dataclass
class Offer:
    """The tools of one model step: as the model sees them and where they lead.

    ``offered`` (each dynamic Tool's tools, by their own names), ``renamed``
    (model name -> [Tool, own name], for names that differ) and ``notices``
    (tools left out or renamed because of a clash, and why) are what the step
    records.
    """

    defs: list[ToolDef] = field(default_factory=list)
    routes: dict[str, Route] = field(default_factory=dict)
    offered: dict[str, list[str]] = field(default_factory=dict)
    renamed: dict[str, list[str]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def model_names(tools: Sequence[tuple[str, str]]) -> tuple[list[str | None], list[str]]:
    """The model name of each ``(Tool, own name)``, and notices about clashes.

    The rules, in order:

    1. A name that is valid as it is stays as it is.
    2. Otherwise each character outside ``[a-zA-Z0-9_-]`` becomes ``_``; a
       name longer than 64 characters keeps its first 55 and ends with ``_``
       and 8 hex digits of a hash of the whole name.
    3. A name offered by more than one Tool becomes ``TOOL__name`` (then made
       valid by rule 2) for every Tool that offers it, so that none of them
       wins by its place in the Agent's list.
    4. Names that still clash keep the one that was valid as given; each
       other one ends with the hash of its own name, whatever its length.
    5. A name that clashes even then is left out (``None``), with a notice.

    The names depend on the names offered together, never on their order
    (except for rule 5's pick, which keeps the first).
    """
    names, notices = _model_names(tuple(tools))
    return list(names), list(notices)


@functools.lru_cache(maxsize=1024)
def _model_names(
    tools: tuple[tuple[str, str], ...],
) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
    """:func:`model_names`, remembered: an Agent offers the same tools at every step."""
    names = [_valid(own) for _, own in tools]
    notices: list[str] = []
    offered_by: dict[str, dict[str, None]] = defaultdict(dict)  # Tools in the Agent's order
    for (toolset, _), name in zip(tools, names, strict=True):
        offered_by[name][toolset] = None
    shared = {name: list(sets) for name, sets in offered_by.items() if len(sets) > 1}
    for i, (toolset, own) in enumerate(tools):
        if names[i] in shared:
            names[i] = _valid(f"{toolset}__{own}")
    for name, toolsets in shared.items():
        qualified = ", ".join(_valid(f"{t}__{own}") for t, own in tools if _valid(own) == name)
        notices.append(
            f"tool {name!r} is offered by Tools {', '.join(toolsets)}: offered as {qualified}"
        )
    counts = Counter(names)
    for i, (toolset, own) in enumerate(tools):
        name = names[i]
        given = own if name == _valid(own) else f"{toolset}__{own}"
        if counts[name] > 1 and given != name:
            names[i] = _valid(given, hashed=True)
    taken: dict[str, int] = {}
    result: list[str | None] = []
    for i, name in enumerate(names):
        if name in taken:
            first = tools[taken[name]]
            notices.append(
                f"tool {tools[i][1]!r} of Tool {tools[i][0]} is left out: its name {name!r} "
                f"clashes with {first[1]!r} of Tool {first[0]}"
            )
            result.append(None)
            continue
        taken[name] = i
        result.append(name)
    return tuple(result), tuple(notices)


async def offer_tools(toolsets: Mapping[str, ToolSet], recorded: Mapping[str, Any] | None) -> Offer:
    """The tools to offer at a step, in the Agent's order.

    Args:
        toolsets: The Agent's Tools, by resource name, in the Agent's order.
        recorded: The step's recorded ``model.call`` data when it is in the log:
            dynamic Tools are not asked again and names come from the record.
    """
    offer = Offer()
    listed: list[tuple[ToolSet, ToolDef]] = []
    for toolset in toolsets.values():
        if toolset.dynamic and recorded is not None:
            own = (recorded.get("offered") or {}).get(toolset.name, [])
            found = [ToolDef(n, "", {}) for n in own]
        else:
            found = await toolset.definitions()
            # Only dynamic Tools withhold; the Protocol check is slow enough to skip.
            if toolset.dynamic and isinstance(toolset, Withholding):
                offer.notices += [
                    f"Tool {toolset.name}: tool {tool!r} is left out: {why}"
                    for tool, why in toolset.withheld().items()
                ]
        if toolset.dynamic:
            offer.offered[toolset.name] = [d.name for d in found]
        listed += [(toolset, d) for d in found]
    pairs = [(ts.name, d.name) for ts, d in listed]
    if recorded is None:
        names, notices = model_names(pairs)
        offer.notices += notices
    else:
        names = _recorded_names(pairs, recorded.get("renamed") or {})
        offer.notices = list(recorded.get("notices") or [])
    for (toolset, definition), name in zip(listed, names, strict=True):
        if name is None or name in offer.routes:
            if toolset.dynamic and name is None:
                offer.offered[toolset.name].remove(definition.name)
            continue
        offer.routes[name] = Route(toolset, definition.name)
        offer.defs.append(ToolDef(name, definition.description, definition.parameters))
        if name != definition.name:
            offer.renamed[name] = [toolset.name, definition.name]
    return offer


def _recorded_names(
    pairs: Sequence[tuple[str, str]], renamed: Mapping[str, Sequence[str]]
) -> list[str | None]:
    """Each tool's name as recorded: renamed ones by the record, the others as they are.

    A log written before names were mapped has no ``renamed``: its names were
    offered as they are, the first Tool offering a name taking it.
    """
    by_tool = {(str(t), str(own)): name for name, (t, own) in renamed.items()}
    return [by_tool.get(pair, pair[1]) for pair in pairs]


def _valid(name: str, *, hashed: bool = False) -> str:
    """``name`` as a valid model name: rules 1 and 2 of :func:`model_names` (4 with ``hashed``)."""
    if not hashed and MODEL_NAME.match(name):
        return name
    text = _NOT_ALLOWED.sub("_", name) or "_"
    if not hashed and len(text) <= _MAX:
        return text
    digest = hashlib.blake2b(name.encode(), digest_size=_HASHED // 2).hexdigest()
    return f"{text[: _MAX - _HASHED - 1]}_{digest}"
