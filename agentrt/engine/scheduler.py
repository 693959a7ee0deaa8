"""Which queued runs a worker takes next: weighted fair shares between tenants,
concurrency limits per tenant, Agent and Model, and priority classes within a
tenant.

Every free slot goes to the tenant whose runs running now, over its weight, are
fewest (ties: by a draw, see :func:`pick`), so tenants that all
have work share the fleet's slots in proportion to their weights, and a tenant
that submits after another flooded the queue gets the next free slot, not a
place behind the backlog. Within a tenant, runs go by priority class (raised one
class for every minute waited, see :mod:`agentrt.state.run_queue`), then oldest
first: a tenant orders its own runs, and no class of one tenant outranks another
tenant's share. A run whose tenant, Agent or Model runs its ``max_running``
already waits; what holds each waiting run back is said by :func:`held_back`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agentrt.state.run_queue import QueuedRun, QueueView, RunCap

__all__ = ["Shares", "TenantShare", "caps_of", "held_back", "pick"]


@dataclass(frozen=True, slots=True)
class TenantShare:
    """A tenant's weight in the fair share and the runs it may run at once."""

    weight: float = 1.0
    max_running: int | None = None


@dataclass(frozen=True, slots=True)
class Shares:
    """What the scheduler weighs: each tenant's share, each Agent's limit and Model,
    and each Model's limit (keys are ``(tenant, name)``)."""

    tenants: Mapping[str, TenantShare] = field(default_factory=dict)
    agent_limits: Mapping[tuple[str, str], int] = field(default_factory=dict)
    agent_models: Mapping[tuple[str, str], str] = field(default_factory=dict)
    model_limits: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def of(self, namespace: str) -> TenantShare:
        """The tenant's share (an even one unless set)."""
        return self.tenants.get(namespace, TenantShare())


@dataclass
class _Running:
    """What runs, counted as the picks add to it."""

    tenants: Counter[str] = field(default_factory=Counter)
    agents: Counter[tuple[str, str]] = field(default_factory=Counter)
    models: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def of(cls, view: QueueView, shares: Shares) -> _Running:
        running = cls()
        for (namespace, agent), n in view.running.items():
            running.add(namespace, agent, shares, n)
        return running

    def add(self, namespace: str, agent: str, shares: Shares, n: int = 1) -> None:
        self.tenants[namespace] += n
        self.agents[(namespace, agent)] += n
        model = shares.agent_models.get((namespace, agent))
        if model is not None:
            self.models[(namespace, model)] += n


def pick(view: QueueView, slots: int, shares: Shares, *, draw: int | None = None) -> list[str]:
    """The runs to take for ``slots`` free slots, in the order to take them.

    Tenants tied on running over weight: the one whose next run has waited longest;
    with ``draw`` (a random number per pick), the one it draws. Workers that read
    the queue at the same moment see the same tie, and the same winner would take
    every tie they race on: drawn, their ties split evenly instead.
    """
    running = _Running.of(view, shares)
    queues = {ns: [r for r in view.waiting if r.namespace == ns] for ns in _tenants(view)}
    picked: list[str] = []
    while len(picked) < slots and queues:
        namespace = min(queues, key=lambda ns: _turn(ns, queues[ns], running, shares, draw))
        share = shares.of(namespace)
        if share.max_running is not None and running.tenants[namespace] >= share.max_running:
            del queues[namespace]
            continue
        queue = queues[namespace]
        run = next((r for r in queue if _limit_reached(r, running, shares) is None), None)
        if run is None:
            del queues[namespace]
            continue
        queue.remove(run)
        if not queue:
            del queues[namespace]
        picked.append(run.id)
        running.add(run.namespace, run.agent, shares)
    return picked


def held_back(run: QueuedRun, view: QueueView, shares: Shares) -> str | None:
    """Which limit holds ``run`` back now, in words (``None``: only its turn)."""
    running = _Running.of(view, shares)
    share = shares.of(run.namespace)
    if share.max_running is not None and running.tenants[run.namespace] >= share.max_running:
        return f"tenant {run.namespace} is at its max_running={share.max_running}"
    return _limit_reached(run, running, shares)


def caps_of(runs: Iterable[QueuedRun], shares: Shares) -> dict[str, tuple[RunCap, ...]]:
    """The limits of runs at once the claim of each of ``runs`` must keep, by run id:
    what :func:`pick` weighed on a read, kept exact in the claim's own write."""
    caps = {}
    for run in runs:
        found = []
        most = shares.of(run.namespace).max_running
        if most is not None:
            found.append(RunCap(run.namespace, most))
        most = shares.agent_limits.get((run.namespace, run.agent))
        if most is not None:
            found.append(RunCap(run.namespace, most, (run.agent,)))
        model = shares.agent_models.get((run.namespace, run.agent))
        most = shares.model_limits.get((run.namespace, model or ""))
        if model is not None and most is not None:
            agents = sorted(a for (ns, a), m in shares.agent_models.items()
                            if ns == run.namespace and m == model)  # fmt: skip
            found.append(RunCap(run.namespace, most, tuple(agents)))
        if found:
            caps[run.id] = tuple(found)
    return caps


def _tenants(view: QueueView) -> list[str]:
    return sorted({run.namespace for run in view.waiting})


def _turn(
    namespace: str, queue: list[QueuedRun], running: _Running, shares: Shares, draw: int | None
) -> tuple[float, float]:
    share = running.tenants[namespace] / shares.of(namespace).weight
    if draw is None:
        return share, queue[0].created_at
    return share, _drawn(namespace, draw)


def _drawn(namespace: str, draw: int) -> float:
    digest = hashlib.blake2b(f"{draw}:{namespace}".encode(), digest_size=8).digest()
    return float(int.from_bytes(digest, "big"))


def _limit_reached(run: QueuedRun, running: _Running, shares: Shares) -> str | None:
    agent = (run.namespace, run.agent)
    limit = shares.agent_limits.get(agent)
    if limit is not None and running.agents[agent] >= limit:
        return f"agent {run.agent} is at its max_running={limit}"
    model = shares.agent_models.get(agent)
    if model is not None:
        limit = shares.model_limits.get((run.namespace, model))
        if limit is not None and running.models[(run.namespace, model)] >= limit:
            return f"model {model} is at its max_running={limit}"
    return None
