"""What the audit log records of runs and resources: each record's draft, made where
the thing happens.

Each draft rides on the write that does the thing (see :mod:`agentrt.state.audit`):
a run's first event (the worker's submit, a fork), a tool call's durable intent and
a refusal by a quota or a Policy (the journal's tool steps, the gateway's one way
to a tool), a person's decision (decisions), a run's ``budget_exhausted`` end (the
executor's recorded end), a resource's change (the catalog). So a record exists exactly when what it
records does: a step replayed or resumed from the log appends no event and so no
record, and a write refused (a lost lease, a cancelled run) takes its record with it.

Bodies are small: a run's input and a call's arguments are kept whole up to a few
hundred bytes and always named by their SHA-256, which the run's log (or the
caller) can be checked against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from agentrt import _json
from agentrt.engine import events as ev
from agentrt.state.audit import AuditDraft
from agentrt.state.records import NewRun

__all__ = [
    "KEPT_BYTES",
    "decided",
    "resource_applied",
    "reopened",
    "resource_deleted",
    "stopped",
    "submitted",
    "tool_called",
    "tool_refused",
]

KEPT_BYTES: Final = 512
"""An input or arguments whose JSON is longer is recorded by its digest and size only."""

# The resource kinds whose name is an agent's: their records carry it as the agent.
_RUNNABLE: Final = frozenset({"Agent", "Team"})


def _kept(name: str, value: Any) -> dict[str, Any]:
    """``value`` under ``name`` if small, and always its digest and size."""
    encoded = _json.dumps(value)
    kept: dict[str, Any] = {
        f"{name}_sha256": hashlib.sha256(encoded).hexdigest(),
        f"{name}_bytes": len(encoded),
    }
    if len(encoded) <= KEPT_BYTES:
        kept[name] = value
    return kept


def submitted(input: str, run: NewRun, fork: Mapping[str, Any] | None = None) -> AuditDraft:
    """``run`` started by its principal with ``input`` (its target is the run's agent)."""
    body: dict[str, Any] = _kept("input", input)
    for name, value in (
        ("session", run.session_id), ("parent_run", run.parent_run),
        ("idempotency_key", run.idempotency_key), ("fork", fork),
    ):  # fmt: skip
        if value is not None:
            body[name] = value
    return AuditDraft("run.submitted", run.principal, body)


def _call(step: int, data: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"step": step, "tool": data.get("name")}
    for name in ("toolset", "attempt", "decision", "policy"):
        if name in data:
            body[name] = data[name]
    return {**body, **_kept("args", data.get("args"))}


def tool_called(step: int, data: Mapping[str, Any], principal: str | None) -> AuditDraft:
    """A tool call about to be made at ``step``: its ``tool.call`` intent's data."""
    return AuditDraft("tool.call", principal, _call(step, data))


def tool_refused(
    step: int, data: Mapping[str, Any], reason: str, principal: str | None, *, policy: bool = False
) -> AuditDraft:
    """A tool call refused before it ran, by a quota (``tool.refused``) or with
    ``policy`` by the tenant's Policies (``policy.refused``, the verdict in the body's
    ``policy``): what it was, and why."""
    kind = "policy.refused" if policy else "tool.refused"
    return AuditDraft(kind, principal, {**_call(step, data), "reason": reason})


def decided(type: str, step: int, data: Mapping[str, Any]) -> AuditDraft | None:
    """A person's decision on ``step`` (an approval, a denial, a resolve), by its ``by``;
    ``None`` for any other event."""
    if type == ev.APPROVAL_DECIDED:
        kind = "tool.approved" if data.get("approved") else "tool.denied"
    elif type == ev.TOOL_DECISION:
        kind = "tool.resolved"
    else:
        return None
    body: dict[str, Any] = {"step": step}
    for name in ("reason", "action"):
        if data.get(name) is not None:
            body[name] = data[name]
    if "output" in data:
        body.update(_kept("output", data["output"]))
    return AuditDraft(kind, data.get("by"), body)


def stopped(
    status: str, reason: str | None, error: Mapping[str, Any] | None, principal: str | None
) -> AuditDraft | None:
    """A run ended by a budget (``None`` for any other end)."""
    if status != "budget_exhausted":
        return None
    body: dict[str, Any] = {"reason": reason}
    if error is not None:
        body["error"] = dict(error)
    return AuditDraft("run.budget_exhausted", principal, body)


def reopened(data: Mapping[str, Any]) -> AuditDraft:
    """A ``budget_exhausted`` run raised by its ``by``: what was added, why it had stopped."""
    return AuditDraft("run.reopened", data.get("by"), {"added": data["added"], "was": data["was"]})


def resource_applied(kind: str, name: str, body: Mapping[str, Any], by: str | None) -> AuditDraft:
    """A resource stored by ``by`` (the store adds the generation the change made)."""
    record = {"kind": kind, "name": name, **_kept("spec", body.get("spec"))}
    return AuditDraft("resource.applied", by, record, agent=name if kind in _RUNNABLE else None)


def resource_deleted(kind: str, name: str, by: str | None) -> AuditDraft:
    """A resource deleted by ``by``."""
    agent = name if kind in _RUNNABLE else None
    return AuditDraft("resource.deleted", by, {"kind": kind, "name": name}, agent=agent)
