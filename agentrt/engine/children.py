"""Child runs: the runs an agent tool call or a team node starts, found from the store.

A child run is an ordinary run with ``parent_run`` set. Its parent's execution
asks this service to run one (by a stable idempotency key, so a resumed parent
finds the same child again), to stop its unfinished children when it ends
early, and to be continued when a child it waits on ends.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import replace
from typing import Final, Protocol

from agentrt.engine.budget_scopes import drafts_data
from agentrt.engine.catalog import Catalog
from agentrt.engine.plans import RunCreated, RunSpec, with_tags
from agentrt.engine.result import RunResult
from agentrt.errors import ConflictError
from agentrt.state.base import RunRecord, Store
from agentrt.tools.agent import ChildOutcome, ChildRequest

__all__ = ["ChildRunService", "ChildRuns", "RunHost"]

_ROLES_KEPT: Final = 1024  # parents whose role is remembered: one read of each one's log


class ChildRunService(Protocol):
    """What an execution needs to run, stop and be woken by its child runs."""

    async def run(self, request: ChildRequest) -> ChildOutcome:
        """Run (or find again, by its key) a child run, and wait for its end."""
        ...

    async def stop(self, parent_run: str) -> int:
        """Cancel ``parent_run``'s unfinished children and theirs; returns how many."""
        ...

    async def ended(self, parent_run: str, child_run: str) -> None:
        """Continue ``parent_run`` if it waits on ``child_run``, which has ended."""
        ...


class RunHost(Protocol):
    """The part of the worker child runs use: create, wait on, cancel and start runs."""

    async def submit(
        self,
        target: str,
        created: RunCreated,
        *,
        namespace: str,
        idempotency_key: str | None = None,
        parent_run: str | None = None,
        principal: str | None = None,
    ) -> RunRecord:
        """Create a run of a resolved plan and start it here (or find it by its key)."""
        ...

    async def wait(self, run_id: str) -> RunResult:
        """Wait until the run ends or waits for a person."""
        ...

    async def cancel(self, run_id: str, *, wait_s: float = 0.0) -> RunRecord:
        """Cancel a run, wherever it executes."""
        ...

    def executing(self, run_id: str) -> bool:
        """Whether the run executes in this process now."""
        ...

    async def take_up(self, run: RunRecord) -> None:
        """Lease the run and execute it here (``ConflictError`` if another holds it)."""
        ...


class ChildRuns:
    """Child runs of the runs a worker executes, kept in the store and listed from it."""

    def __init__(self, store: Store, catalog: Catalog, host: RunHost) -> None:
        self._store = store
        self._catalog = catalog
        self._host = host
        self._started: OrderedDict[str, tuple[str | None, tuple[str, ...]]] = OrderedDict()

    async def run(self, request: ChildRequest) -> ChildOutcome:
        """Run (or find again, by its key) the child run of an agent tool call or node,
        on behalf of whoever started its parent (its principal, and its key's role),
        with its parent's query's tags (an Agent's child routes by them too)."""
        parent = await self._store.get_run(request.parent_run)
        created = await self._catalog.plan(
            request.agent,
            request.input,
            namespace=request.namespace,
            budgets=request.budgets,
            kind=request.kind,
        )
        role, tags = await self._started_with(request.parent_run)
        if role is not None:
            created = replace(created, role=role)
        if tags and isinstance(created.plan, RunSpec):
            created = with_tags(created, tags)  # its routing rules route by its query's tags
        if request.draws_on or request.budget_session:
            drafts = tuple(drafts_data(request.draws_on))
            created = replace(created, draws_on=drafts, budget_session=request.budget_session)
        run = await self._host.submit(
            request.agent,
            created,
            namespace=request.namespace,
            idempotency_key=request.run_key,  # each attempt of a team node: its own child
            parent_run=request.parent_run,
            principal=None if parent is None else parent.principal,
        )
        # Found again after the parent's crash, an interrupted child was resumed by submit.
        result = await self._host.wait(run.id)
        return ChildOutcome(
            run.id, result.status, result.output, result.reason, result.usage, result.child_runs
        )

    async def _started_with(self, run_id: str) -> tuple[str | None, tuple[str, ...]]:
        """The role ``run_id`` was started with and its query's tags (recorded in its
        first event, never changed)."""
        if run_id in self._started:
            self._started.move_to_end(run_id)
            return self._started[run_id]
        events = await self._store.read_events(run_id)
        first = events[0].data if events else {}
        started = (first.get("role"), tuple(first.get("spec", {}).get("tags", ())))
        self._started[run_id] = started
        if len(self._started) > _ROLES_KEPT:
            self._started.popitem(last=False)
        return started

    async def stop(self, parent_run: str) -> int:
        """Cancel the unfinished child runs of ``parent_run`` (its nodes, its agent tools'
        calls), and theirs in turn: the parent was cancelled, timed out or failed."""
        stopped = 0
        for child in await self._store.list_runs(parent=parent_run, limit=10_000):
            if child.fork_step is not None:
                continue  # a fork names its origin as parent; it is not a child
            stopped += await self.stop(child.id)
            if not child.finished:
                current = await self._store.get_run(child.id)
                if current is not None and not current.finished:
                    await self._host.cancel(child.id)
                    stopped += 1
        return stopped

    async def ended(self, parent_run: str, child_run: str) -> None:
        """Continue a team run that waits on ``child_run``, now that the child has ended."""
        parent = await self._store.get_run(parent_run)
        if parent is None or parent.status != "waiting" or self._host.executing(parent.id):
            return
        last = await self._store.read_events(parent.id, after_seq=parent.last_seq - 1)
        if not last or child_run not in last[-1].data.get("waits_on", ()):
            return
        with contextlib.suppress(ConflictError):  # another worker continues it
            await self._host.take_up(parent)
