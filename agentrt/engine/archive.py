"""The archive: runs exported and imported as logs, forked from a step, collected.

A run's log is its whole state, so an exported run replays anywhere; a fork
is a new run that shares a prefix of another's steps; gc deletes finished runs
and what only they used.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from agentrt._text import count, with_article
from agentrt.engine import events as ev
from agentrt.engine.audit_trail import submitted
from agentrt.engine.catalog import Catalog
from agentrt.engine.plans import ForkPoint, RunCreated, RunSpec
from agentrt.engine.run_view import EXPORT_FORMAT, read_run
from agentrt.engine.scratch import ScratchSpace
from agentrt.engine.worker import Worker, new_run_id
from agentrt.errors import NotFoundError, UsageError
from agentrt.spec.resources import Model
from agentrt.state.base import (
    Event,
    EventDraft,
    GcResult,
    NewRun,
    RunRecord,
    RunStatus,
    RunUpdate,
    SessionRecord,
    Usage,
)

__all__ = ["Archive"]

# What a fork copies of its origin: the steps, not the origin's start or end.
_STEP_EVENTS = frozenset(
    {
        ev.MODEL_CALL,
        ev.MODEL_ERROR,
        ev.MODEL_RESULT,
        ev.TOOL_CALL,
        ev.TOOL_RESULT,
        ev.TOOL_UNKNOWN,
        ev.TOOL_DECISION,
    }
)


class Archive:
    """Export, import, fork and gc of the runs of ``worker``'s store."""

    def __init__(
        self,
        worker: Worker,
        catalog: Catalog,
        scratch: ScratchSpace | None,
        clock: Callable[[], float],
    ) -> None:
        self._worker = worker
        self._store = worker.store
        self._catalog = catalog
        self._scratch = scratch
        self._clock = clock

    async def export_run(self, run_id: str) -> dict[str, Any]:
        """A run's whole log as JSON-ready data, to archive, audit or replay elsewhere."""
        return (await read_run(self._store, run_id)).export()

    async def import_run(self, data: dict[str, Any]) -> RunRecord:
        """Store a log made by :meth:`export_run` as a new run (a new id), to replay it.

        The run is created leased to this worker, so no other claims it before its
        status is the log's: a finished log's run is never executed; an unfinished
        one is handed to the queue (any worker continues it from its last step).
        """
        if data.get("format") != EXPORT_FORMAT:
            raise UsageError(f"not an exported run: expected `format: {EXPORT_FORMAT}`")
        meta, events = data["run"], data["events"]
        if not events or events[0]["type"] != ev.RUN_CREATED:
            raise UsageError(
                f"an exported run starts with {with_article(ev.RUN_CREATED + ' event')}"
            )
        drafts = [EventDraft(e["type"], e["data"], e["ts"], e["step"]) for e in events]
        worker, now = self._worker, self._clock()
        new = NewRun(
            new_run_id(), meta["namespace"], meta["agent"], now,
            lease_owner=worker.owner, lease_expires=now + worker.lease_ttl_s,
        )  # fmt: skip
        run, _ = await self._store.create_run(new, drafts)
        status = _ended_as(events)
        if status is not None:
            update = RunUpdate(status=status, usage=_usage_of(events))
            await self._store.append_events(
                run.id, [], expected_seq=run.last_seq, owner=worker.owner, update=update
            )
        await self._store.release_lease(run.id, worker.owner)
        return await worker.get(run.id)

    async def fork(
        self,
        run_id: str,
        *,
        from_step: int,
        model: str | None = None,
        instructions: str | None = None,
        start: bool = True,
        principal: str | None = None,
        role: str | None = None,
    ) -> RunRecord:
        """Start a new run that shares steps ``1..from_step`` of ``run_id`` and diverges after.

        ``model`` and ``instructions`` change what the new run uses from then on;
        ``principal`` is who forks it and ``role`` their key's (the new run's, as for
        a run submitted).
        """
        origin = await read_run(self._store, run_id)
        parent, events = origin.run, list(origin.events)
        if not 0 <= from_step <= origin.steps:
            raise UsageError(
                f"run {run_id} has {count(origin.steps, 'step')}: fork it from a step "
                f"between 0 and {origin.steps} (--from-step)"
            )
        created = RunCreated.from_data(events[0].data)
        if not isinstance(created.plan, RunSpec):
            raise UsageError(f"run {run_id} is a team run; fork one of its nodes' runs instead")
        spec = await self._changed(created.plan, parent.namespace, model, instructions)
        now = self._clock()
        session_id = None
        if parent.session_id is not None:
            # The fork's session starts from the parent's history before the parent's turn.
            session_id = f"{parent.session_id}~{secrets.token_hex(3)}"
            await self._store.create_session(
                SessionRecord(
                    session_id, parent.namespace, now, parent.session_id, parent.turn, 0, principal
                )
            )
        forked = RunCreated(created.input, spec, ForkPoint(run_id, from_step), role=role)
        data = forked.data if principal is None else {**forked.data, "by": principal}
        new = NewRun(
            new_run_id(),
            parent.namespace,
            parent.agent,
            now,
            session_id,
            parent_run=run_id,
            fork_step=from_step,
            # Created leased to this worker when it starts here: a worker serving
            # the queue (this one too) never takes it up before it is ready.
            lease_owner=self._worker.owner if start else None,
            lease_expires=now + self._worker.lease_ttl_s if start else None,
            principal=principal,
        )
        audit = submitted(created.input, new, fork=data["fork"])
        # The shared steps are copies, of calls the parent made: they are not audited again.
        copied = [EventDraft(ev.RUN_CREATED, data, now, audit=audit)]
        copied += [EventDraft(e.type, e.data, e.ts, e.step) for e in _shared(events, from_step)]
        run, _ = await self._store.create_run(new, copied)
        if self._scratch is not None:
            await self._scratch.restore(run_id, from_step, run.id)
        if start:
            self._worker.spawn(run.id, session_id=run.session_id)
        return run

    async def _changed(
        self, spec: RunSpec, namespace: str, model: str | None, instructions: str | None
    ) -> RunSpec:
        """``spec`` with the fork's changes of model and instructions."""
        changes: dict[str, Any] = {}
        models = spec.models
        if model is not None:
            changes["model"] = model
            models = {**models, model: (await self._catalog.get(Model, namespace, model)).spec}
        if instructions is not None:
            changes["instructions"] = instructions
        if not changes:
            return spec
        agent_spec = spec.agent_spec.model_copy(update=changes)
        # Validated again: a changed model must be one the spec's fields accept.
        return RunSpec.model_validate(
            spec.model_copy(update={"agent_spec": agent_spec, "models": models}).model_dump()
        )

    async def gc(self, *, finished_before: float) -> GcResult:
        """Delete finished runs older than the cutoff, their scratch directories, and
        sandbox output artifacts older than the cutoff."""
        removed = await self._store.gc(finished_before=finished_before)
        if self._scratch is not None and removed.run_ids:
            await asyncio.to_thread(self._scratch.remove, removed.run_ids)
        await asyncio.to_thread(
            self._worker.executor.tool_factory.remove_old_artifacts, finished_before
        )
        return removed

    async def delete_session(self, session_id: str) -> tuple[str, ...]:
        """Delete a session with its turns and their child runs, and their scratch
        directories; returns the runs deleted. ``SessionBusy`` while one is unfinished."""
        removed = await self._store.delete_session(session_id)
        if removed is None:
            raise NotFoundError(f"session {session_id!r} not found")
        if self._scratch is not None and removed:
            await asyncio.to_thread(self._scratch.remove, removed)
        return removed


def _shared(events: list[Event], from_step: int) -> list[Event]:
    """What a fork from ``from_step`` copies of its origin's log: the steps through it,
    and the time and ids its context gave at them (so the fork's hooks see them again)."""
    return [
        e
        for e in events
        if (e.type in _STEP_EVENTS and e.step is not None and e.step <= from_step)
        or (e.type == ev.CONTEXT_VALUE and int(e.data.get("step", 0)) <= from_step)
    ]


def _usage_of(events: list[dict[str, Any]]) -> Usage:
    """What the steps of an exported log consumed."""
    usage = Usage()
    for e in events:
        if e["type"] == ev.MODEL_RESULT:
            data = e["data"]
            usage += Usage(data.get("in", 0), data.get("out", 0), data.get("cost", 0.0), 1, 0)
        elif e["type"] == ev.TOOL_CALL:
            usage += Usage(tool_calls=1)
    return usage


def _ended_as(events: list[dict[str, Any]]) -> RunStatus | None:
    """The status a log ended with: its last end, unless the run was reopened after."""
    for event in reversed(events):
        if event["type"] == ev.RUN_REOPENED:
            return None
        if event["type"] == ev.RUN_FINISHED:
            status: RunStatus = event["data"]["status"]
            return status
    return None
