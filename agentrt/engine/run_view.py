"""The read model of a run: what the CLI, exports and the HTTP API show of it.

One typed view built from the stored run and its log, read once: status,
reason, output, steps, usage, and the child runs it started. Every reader of a
run goes through it, so they agree on what a run is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentrt.engine import events as ev
from agentrt.engine.result import RunResult
from agentrt.errors import NotFoundError
from agentrt.state.base import Event, RunRecord, Store, Usage

__all__ = ["EXPORT_FORMAT", "RunView", "event_dict", "read_run", "run_summary", "usage_dict"]

EXPORT_FORMAT = "agentrt.run/v1"


def usage_dict(usage: Usage) -> dict[str, Any]:
    """A run's usage as JSON-ready data."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": usage.cost_usd,
        "model_calls": usage.model_calls,
        "tool_calls": usage.tool_calls,
    }


def run_summary(run: RunRecord) -> dict[str, Any]:
    """A run's row as JSON-ready data (``runs list --json``, an imported run)."""
    return {
        "id": run.id,
        "namespace": run.namespace,
        "agent": run.agent,
        "status": run.status,
        "reason": run.reason,
        # Why its cancel was asked for, when the asker said (a newer turn: interrupt, rollback).
        "cancel_cause": run.cancel_cause,
        "session": run.session_id,
        "turn": run.turn,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "parent_run": run.parent_run,
        "fork_step": run.fork_step,
        # Who started it (an API key: ``key:NAME``; ``None``: the CLI or a worker), and
        # whether (and by whom) its cancellation was asked for.
        "principal": run.principal,
        "cancel_requested": run.cancel_requested,
        "cancel_by": run.cancel_by,
        # Who executes it now (``None``: nobody; a worker takes it up), and until when.
        "lease_owner": run.lease_owner,
        "lease_expires": run.lease_expires,
        "usage": usage_dict(run.usage),
    }


def event_dict(event: Event) -> dict[str, Any]:
    """One event of the log as JSON-ready data."""
    return {"seq": event.seq, "type": event.type, "step": event.step, "ts": event.ts,
            "data": event.data}  # fmt: skip


@dataclass(frozen=True)
class RunView:
    """A run as stored, with its log and (when read with them) its child runs."""

    run: RunRecord
    events: tuple[Event, ...]
    children: tuple[RunView, ...] = ()

    @classmethod
    def of(cls, run: RunRecord, events: list[Event], children: tuple[RunView, ...] = ()) -> RunView:
        """The view of a run whose log the caller has read."""
        return cls(run, tuple(events), children)

    @property
    def finished_event(self) -> Event | None:
        """The ``run.finished`` event, if the run has ended."""
        for event in reversed(self.events):
            if event.type == ev.RUN_FINISHED:
                return event
        return None

    @property
    def output(self) -> str | None:
        """What the run answered (``None`` until it succeeded)."""
        finished = self.finished_event
        return finished.data.get("output") if finished else None

    @property
    def steps(self) -> int:
        """How many steps the run recorded."""
        return max((e.step or 0 for e in self.events), default=0)

    @property
    def policy_refusals(self) -> int:
        """Tool calls the tenant's Policies refused before they ran (each also a
        ``policy.refused`` record of the tenant's audit log)."""
        return sum(
            1
            for e in self.events
            if e.type == ev.TOOL_RESULT and e.data.get("reconciled") == "policy"
        )

    @property
    def child_runs(self) -> int:
        """Child runs its agent tools started, theirs included (as recorded at its end)."""
        finished = self.finished_event
        return int(finished.data.get("child_runs", 0)) if finished else 0

    def result(self) -> RunResult:
        """The run's outcome as :meth:`Runtime.wait` returns it."""
        run = self.run
        return RunResult(
            run.id, run.status, self.output, run.reason, run.usage, self.steps, self.child_runs
        )

    def summary(self) -> dict[str, Any]:
        """The run's row as JSON-ready data (``runs list --json``)."""
        return run_summary(self.run)

    def to_dict(self) -> dict[str, Any]:
        """The whole view as JSON-ready data (``runs get --json``)."""
        run = self.summary()
        run["steps"] = self.steps
        run["policy_refusals"] = self.policy_refusals
        run["children"] = [child.run.id for child in self.children]
        return {"run": run, "events": [event_dict(e) for e in self.events]}

    def descendants(self) -> dict[str, RunView]:
        """Every child run's view, and theirs, by id."""
        found: dict[str, RunView] = {}
        for child in self.children:
            found[child.run.id] = child
            found.update(child.descendants())
        return found

    def export(self) -> dict[str, Any]:
        """The run's whole log in the archive format, to audit or replay elsewhere."""
        run = self.run
        return {
            "format": EXPORT_FORMAT,
            "run": {
                "id": run.id,
                "namespace": run.namespace,
                "agent": run.agent,
                "status": run.status,
                "created_at": run.created_at,
                "principal": run.principal,
            },
            "events": [event_dict(e) for e in self.events],
        }


async def read_run(store: Store, run_id: str, *, children: bool = False) -> RunView:
    """Read a run and its log (and with ``children``, its child runs' too, nested)."""
    run = await store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} not found; list runs with `agentrt runs list`")
    events = await store.read_events(run_id)
    if not children:
        return RunView.of(run, events)
    kids = [await read_run(store, child.id, children=True) for child in await _children(store, run)]
    return RunView.of(run, events, tuple(kids))


async def _children(store: Store, run: RunRecord) -> list[RunRecord]:
    found = await store.list_runs(parent=run.id, limit=10_000)
    # Forks name their origin as parent too; they are not its children.
    return sorted((c for c in found if c.fork_step is None), key=lambda c: c.created_at)
