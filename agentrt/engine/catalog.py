"""The catalog: stored resources, and their resolution into frozen run plans.

``apply`` validates and stores resources; ``plan`` turns a target (an Agent or
a Team) and an input into the typed :class:`RunCreated` a new run freezes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from agentrt.engine.audit_trail import resource_applied, resource_deleted
from agentrt.engine.plans import RunCreated, RunSpec, TeamRunSpec
from agentrt.errors import NotFoundError, UsageError
from agentrt.spec.callables import check_callables
from agentrt.spec.crossrefs import check_references, key_of
from agentrt.spec.loader import Loaded, load_paths
from agentrt.spec.resources import (
    Agent,
    Budgets,
    Model,
    ModelSpec,
    Query,
    Resource,
    Team,
    Tool,
    ToolSpec,
)
from agentrt.spec.team import team_graph
from agentrt.state.base import ResourceRecord, Store

__all__ = ["Catalog"]

R = TypeVar("R", bound=Resource)

# Parsed resources are kept per (kind, namespace, name, generation): a busy
# agent costs one read of its namespace per run, no parsing.
_PARSED_CACHE_SIZE = 1024


class Catalog:
    """Stored resources of every namespace, resolved into the plans runs execute."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._parsed: OrderedDict[tuple[str, str, str, int, float], Resource] = OrderedDict()

    async def apply(
        self, resources: Iterable[Resource | Loaded] | str | Path, *, by: str | None = None
    ) -> list[ResourceRecord]:
        """Validate and store resources (objects, or a file/directory of YAML).

        References are checked against the resources given and those stored, and
        every ``module:function`` a resource names must import. Each one changed is
        recorded in its tenant's audit log as applied ``by`` that principal.
        """
        if isinstance(resources, str | Path):
            loaded = load_paths([resources])
        else:
            loaded = [
                r if isinstance(r, Loaded) else Loaded(r, "<python>", None) for r in resources
            ]
        stored = await self._store.list_resources()
        check_references(loaded, known={(r.kind, r.namespace, r.name) for r in stored})
        check_callables(loaded)
        records = []
        for item in loaded:
            if isinstance(item.resource, Query):
                continue  # a Query is submitted, not stored
            kind, namespace, name = key_of(item.resource)
            body = item.resource.model_dump(mode="json", exclude_defaults=True)
            body.setdefault("metadata", {})["namespace"] = namespace
            audit = resource_applied(kind, name, body, by)
            now = self._clock()
            records.append(
                await self._store.put_resource(kind, namespace, name, body, now=now, audit=audit)
            )
        return records

    async def delete(self, kind: str, namespace: str, name: str, *, by: str | None = None) -> bool:
        """Delete a stored resource, recorded in the tenant's audit log as deleted ``by``
        that principal; ``False`` when there was none."""
        audit = resource_deleted(kind, name, by)
        return await self._store.delete_resource(kind, namespace, name, audit=audit)

    async def get(self, cls: type[R], namespace: str, name: str) -> R:
        """One stored resource, parsed; a clear error when it is not there."""
        record = await self._store.get_resource(cls.__name__, namespace, name)
        if record is None:
            raise _not_found(cls.__name__, name, namespace)
        return self._parse(cls, record)

    async def agent_plan(
        self,
        agent: str,
        *,
        namespace: str = "default",
        budgets: Budgets | None = None,
        tighten_only: bool = False,
    ) -> RunSpec:
        """The frozen spec a new run of ``agent`` would execute; ``budgets`` override the
        Agent's (with ``tighten_only``, only where they are lower)."""
        # One read of the namespace's resources; parsing is cached per generation.
        records = {
            (r.kind, r.name): r for r in await self._store.list_resources(namespace=namespace)
        }

        def parsed(cls: type[R], name: str) -> R:
            record = records.get((cls.__name__, name))
            if record is None:
                raise _not_found(cls.__name__, name, namespace)
            return self._parse(cls, record)

        agent_res = parsed(Agent, agent)
        names = [agent_res.spec.model]
        if agent_res.spec.memory.session.summary_model is not None:
            names.append(agent_res.spec.memory.session.summary_model)
        if agent_res.spec.routing is not None:  # frozen with the run: replay needs them all
            names.extend(agent_res.spec.routing.models())
        models: dict[str, ModelSpec] = {}
        while names:
            name = names.pop()
            if name not in models:
                models[name] = parsed(Model, name).spec
                names.extend(models[name].fallbacks)
        tools = {n: parsed(Tool, n).spec for n in agent_res.spec.tools}
        return RunSpec(
            agent=agent,
            namespace=namespace,
            agent_spec=agent_res.spec,
            models=models,
            tools=tools,
            budgets=agent_res.spec.budgets.applied(budgets, tighten_only=tighten_only),
        )

    async def team_plan(
        self,
        team: str,
        *,
        namespace: str = "default",
        budgets: Budgets | None = None,
        concurrency: int | None = None,
        tighten_only: bool = False,
    ) -> TeamRunSpec:
        """The frozen Team a new run of ``team`` would execute, with this run's limits."""
        resource = await self.get(Team, namespace, team)
        limits: dict[str, Any] = {}
        if budgets is not None:
            limits["budgets"] = resource.spec.budgets.applied(budgets, tighten_only=tighten_only)
        if concurrency is not None:
            limits["concurrency"] = min(resource.spec.concurrency, concurrency)
        if limits:
            spec = resource.spec.model_copy(update=limits)
            resource = resource.model_copy(update={"spec": spec})
        # Models that route are frozen with the team, as an agent run freezes its models.
        models: dict[str, ModelSpec] = {}
        tools: dict[str, ToolSpec] = {}
        for node in team_graph(resource).nodes:
            todo = [node.route.model] if node.route is not None and node.route.model else []
            while todo:  # a route's model, and its fallbacks
                name = todo.pop()
                if name not in models:
                    models[name] = (await self.get(Model, namespace, name)).spec
                    todo.extend(models[name].fallbacks)
            if node.tool is not None:
                tools[node.tool] = (await self.get(Tool, namespace, node.tool)).spec
        return TeamRunSpec(team=resource, models=models, tools=tools)

    async def plan(
        self,
        target: str,
        input: str,
        *,
        namespace: str = "default",
        budgets: Budgets | None = None,
        kind: str | None = None,
        concurrency: int | None = None,
        tighten_only: bool = False,
    ) -> RunCreated:
        """What a new run of ``target`` (an Agent, or else a Team of that name) freezes.

        ``kind`` ("Agent" or "Team") says which when the caller knows; ``budgets``
        override the target's (with ``tighten_only``, only where they are lower).
        """
        if kind != "Team":
            try:
                spec = await self.agent_plan(
                    target, namespace=namespace, budgets=budgets, tighten_only=tighten_only
                )
            except NotFoundError:
                if kind == "Agent":
                    raise
            else:
                if concurrency is not None:
                    raise UsageError(
                        f"concurrency limits a Team's nodes; {target!r} is an Agent "
                        "(its parallel tool calls follow loop.parallel_tool_calls)"
                    )
                return RunCreated(input, spec)
        if await self._store.get_resource("Team", namespace, target) is None:
            raise NotFoundError(
                f"no Agent or Team named {target!r} in namespace {namespace!r}; "
                + await self._where_else(target, namespace)
            )
        team = await self.team_plan(
            target, namespace=namespace, budgets=budgets, concurrency=concurrency,
            tighten_only=tighten_only,
        )  # fmt: skip
        return RunCreated(input, team)

    async def _where_else(self, target: str, namespace: str) -> str:
        """The fix for a target not found: the namespaces that have it, else to apply it."""
        others = sorted(
            {
                r.namespace
                for kind in ("Agent", "Team")
                for r in await self._store.list_resources(kind)
                if r.name == target and r.namespace != namespace
            }
        )
        if not others:
            return "define it and run `agentrt apply -f FILE`"
        where = ", ".join(repr(ns) for ns in others)
        return f"it is in namespace {where}: run it there (`-n {others[0]}`)"

    def _parse(self, cls: type[R], record: ResourceRecord) -> R:
        # updated_at too: a deleted and re-created resource restarts at generation 1.
        key = (record.kind, record.namespace, record.name, record.generation, record.updated_at)
        cached = self._parsed.get(key)
        if isinstance(cached, cls):
            self._parsed.move_to_end(key)
            return cast(R, cached)
        parsed = cast(R, cls.model_validate(record.body))
        self._parsed[key] = parsed
        if len(self._parsed) > _PARSED_CACHE_SIZE:
            self._parsed.popitem(last=False)
        return parsed


def _not_found(kind: str, name: str, namespace: str) -> NotFoundError:
    return NotFoundError(
        f"{kind} {name!r} not found in namespace {namespace!r}; "
        f"define it and run `agentrt apply -f FILE`"
    )
