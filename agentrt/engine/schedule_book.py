"""The scheduler's inputs as one process reads them from the store, and the claim of
the runs it picks.

Each tenant's share (its ``Tenant`` resource in ``agentrt-system``) and its Agents'
and Models' ``max_running`` are read at most once every ``ttl_s`` per tenant, so a
claim costs the queue's read and the claim's write, not a read of every spec. A
change reaches every worker within ``ttl_s``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable

from agentrt.engine.recent_reads import RecentReads
from agentrt.engine.scheduler import Shares, TenantShare, caps_of, pick
from agentrt.spec.tenant_spec import TENANTS_NAMESPACE
from agentrt.state.base import Store
from agentrt.state.records import RunRecord

__all__ = ["ScheduleBook", "claim_next"]

_Tenant = tuple[
    TenantShare, dict[tuple[str, str], int], dict[tuple[str, str], str], dict[tuple[str, str], int]
]


class ScheduleBook:
    """Tenants' shares and their Agents' and Models' limits, as the store had them at
    most ``ttl_s`` ago."""

    def __init__(
        self, store: Store, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Read ``store``'s specs, again once ``ttl_s`` passed on ``clock``."""
        self._store = store
        self._read = RecentReads[str, _Tenant](ttl_s=ttl_s, clock=clock)

    async def shares(self, namespaces: Iterable[str]) -> Shares:
        """What the scheduler weighs for the tenants ``namespaces``."""
        tenants, agent_limits, agent_models, model_limits = {}, {}, {}, {}
        for namespace in set(namespaces):
            share, agents, models, limits = await self._tenant(namespace)
            tenants[namespace] = share
            agent_limits.update(agents)
            agent_models.update(models)
            model_limits.update(limits)
        return Shares(tenants, agent_limits, agent_models, model_limits)

    async def limited(self, namespace: str, agent: str) -> bool:
        """Whether a ``max_running`` (the tenant's, the Agent's, or its Model's) could
        hold a run of ``agent`` back."""
        share, agent_limits, agent_models, model_limits = await self._tenant(namespace)
        model = agent_models.get((namespace, agent))
        return (
            share.max_running is not None
            or (namespace, agent) in agent_limits
            or (namespace, model) in model_limits
        )

    async def _tenant(self, namespace: str) -> _Tenant:
        return await self._read.get(namespace, lambda: _read_tenant(self._store, namespace))


async def _read_tenant(store: Store, namespace: str) -> _Tenant:
    found = await store.get_resource("Tenant", TENANTS_NAMESPACE, namespace)
    spec = {} if found is None else found.body.get("spec", {})
    share = TenantShare(float(spec.get("weight", 1.0)), spec.get("max_running"))
    agent_limits, agent_models, model_limits = {}, {}, {}
    for agent in await store.list_resources("Agent", namespace):
        agent_spec = agent.body.get("spec", {})
        agent_models[(namespace, agent.name)] = agent_spec.get("model", "")
        if agent_spec.get("max_running") is not None:
            agent_limits[(namespace, agent.name)] = int(agent_spec["max_running"])
    for model in await store.list_resources("Model", namespace):
        if model.body.get("spec", {}).get("max_running") is not None:
            model_limits[(namespace, model.name)] = int(model.body["spec"]["max_running"])
    return share, agent_limits, agent_models, model_limits


async def claim_next(
    store: Store, book: ScheduleBook, *, owner: str, ttl_s: float, now: float, slots: int
) -> tuple[list[RunRecord], bool]:
    """Claim the runs the scheduler picks for ``slots`` free slots; and whether the
    queue may hold more to pick now (a claim lost a race, or every slot was filled)."""
    view = await store.queue_view(now=now, per_tenant=slots * 2)
    shares = await book.shares(r.namespace for r in view.waiting)
    picked = pick(view, slots, shares, draw=secrets.randbits(32))
    chosen = set(picked)
    caps = caps_of((r for r in view.waiting if r.id in chosen), shares)
    claimed = await store.claim_picked(picked, owner, ttl_s, now=now, caps=caps)
    return claimed, len(picked) == slots or len(claimed) < len(picked)
