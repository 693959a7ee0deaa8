"""The queue as the scheduler sees it: the runs each tenant has waiting to be taken,
in the tenant's own order, and what runs now; and the claim of the runs the
scheduler picked.

A tenant's claimable runs (queued, or running with no live lease) are in order
of their *aged* priority, then oldest first: a run's priority class plus one
class for every ``aging_s`` seconds it has waited, so a low-priority run behind a
stream of higher ones is taken in the end (no starvation). Which tenant's run
goes next is the engine's choice (:mod:`agentrt.engine.scheduler`); the store
claims what it picked with the same guarantee as :meth:`Store.claim_runs`: two
claimers never take the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from agentrt.state.records import RunRecord

__all__ = ["AGING_S", "QueueView", "QueuedRun", "RunCap", "RunQueue", "aged_priority"]

AGING_S: Final = 60.0
"""How long a queued run waits to rise one priority class."""


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A run waiting to be taken: claimable now."""

    id: str
    namespace: str
    agent: str
    priority: int
    created_at: float
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueueView:
    """Each tenant's first claimable runs, in its order, and how many runs of each
    (tenant, agent) run now under a live lease."""

    waiting: tuple[QueuedRun, ...] = ()
    running: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def of(self, namespace: str) -> list[QueuedRun]:
        """The tenant's waiting runs, in its order."""
        return [run for run in self.waiting if run.namespace == namespace]


@dataclass(frozen=True, slots=True)
class RunCap:
    """A limit of runs at once a claim must keep: fewer than ``most`` runs of
    ``namespace`` (of its ``agents`` only, if given) run under a live lease before
    the claim, counted in the claim's own write."""

    namespace: str
    most: int
    agents: tuple[str, ...] | None = None


def aged_priority(priority: int, created_at: float, now: float, aging_s: float = AGING_S) -> int:
    """A queued run's priority as the scheduler weighs it at ``now``."""
    return priority + max(0, int((now - created_at) // aging_s))


class RunQueue(Protocol):
    """The store's queue for the scheduler."""

    async def queue_view(
        self, *, now: float, per_tenant: int, aging_s: float = AGING_S
    ) -> QueueView:
        """Up to ``per_tenant`` claimable runs of each tenant, in its order (aged
        priority, then oldest first), and the live-leased running runs per
        (tenant, agent)."""
        ...

    async def claim_picked(
        self,
        run_ids: Sequence[str],
        owner: str,
        ttl_s: float,
        *,
        now: float,
        caps: Mapping[str, Sequence[RunCap]] | None = None,
    ) -> list[RunRecord]:
        """Lease the runs of ``run_ids`` that are still claimable, in the order given,
        as :meth:`Store.claim_runs` does; those another claimer took meanwhile (or
        is taking) are left out. A run with ``caps`` is claimed only while each has
        room, counting what runs then: claims of runs of one tenant with caps are
        serialised, so concurrent claimers together never pass a cap."""
        ...
