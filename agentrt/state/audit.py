"""The audit log's contract: appending to a tenant's hash chain, listing, its head.

Records are appended in three ways, each atomic with what it records:

- attached to an event (:attr:`EventDraft.audit <agentrt.state.records.EventDraft>`)
  given to :meth:`Store.append_events` or :meth:`Store.create_run`: the record is
  written in the transaction that appends the event, so it exists exactly when
  the event does; a step replayed or resumed appends no event, so no record. The
  store takes the run, its agent, the event's number and time from the run and
  the event;
- with a resource change (``audit=`` of :meth:`Store.put_resource` and
  :meth:`Store.delete_resource`): written only when the resource did change;
- on their own (:meth:`AuditLog.append_audit`), for what has no other write.

Every append locks the tenant's head, takes the next numbers and sets the head in
its transaction, so concurrent appends of one tenant, on any number of processes,
never take one number twice nor fork the chain. Records are never changed or
deleted. The hashing is :mod:`agentrt.observe.audit`'s; verification is
:mod:`agentrt.observe.audit_verify`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrt.observe.audit import AUDIT_KINDS, GENESIS, AuditHead, AuditRecord
from agentrt.observe.audit_verify import AuditVerdict, ChainCheck

__all__ = [
    "AUDIT_KINDS",
    "GENESIS",
    "AuditDraft",
    "AuditHead",
    "AuditLog",
    "AuditRecord",
    "AuditVerdict",
    "verify_audit",
]


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """A record to append: the store gives it its number, time and hashes.

    ``kind`` is one of :data:`~agentrt.observe.audit.AUDIT_KINDS` (others are
    stored as given). ``principal`` is who did it. Attached to an event,
    ``run_id`` and ``agent`` are the run's, whatever the draft says. ``ref``
    makes an append happen once: appending again a draft with a ``ref`` the
    tenant recorded writes nothing and returns the stored record. ``namespace``:
    with a resource change, the tenant whose log records it when that is not the
    resource's namespace (an API key, kept in the system namespace, is its tenant's).
    """

    kind: str
    principal: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    agent: str | None = None
    ref: str | None = None
    namespace: str | None = None


@runtime_checkable
class AuditLog(Protocol):
    """Each tenant's append-only, hash-chained audit log."""

    async def append_audit(
        self, namespace: str, drafts: Sequence[AuditDraft], *, now: float
    ) -> list[AuditRecord]:
        """Append ``drafts`` to the tenant's chain in one write, in order, at time ``now``;
        returns their records. A draft whose ``ref`` the tenant recorded already gets
        the stored record back, and takes no number."""
        ...

    async def list_audit(
        self,
        namespace: str,
        *,
        principal: str | None = None,
        agent: str | None = None,
        run_id: str | None = None,
        kinds: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        before: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The tenant's records that match every filter given, in number order (newest
        first with ``newest_first``), at most ``limit``.

        ``kinds``: any of them; ``since <= ts < until``; ``after < seq < before``
        (the cursor of the page before). Without filters, this is the chain in order,
        as verification reads it. Each filter is served by an index.
        """
        ...

    async def audit_head(self, namespace: str) -> AuditHead | None:
        """Where the tenant's chain ends, or ``None`` when it has no record."""
        ...

    async def audit_namespaces(self) -> list[str]:
        """The tenants that have an audit log (a head or a record), in order."""
        ...


async def verify_audit(log: AuditLog, namespace: str, *, page: int = 1000) -> AuditVerdict:
    """Verify the tenant's chain as ``log`` stores it, reading ``page`` records at a time
    and stopping at the first bad one (see :mod:`agentrt.observe.audit_verify`).

    The head is read once the records are: records appended meanwhile (each moves the
    head with it) are read on to the head, and any record past it was not appended
    by a store.
    """
    check = ChainCheck(namespace)
    after = 0
    while True:
        records = await log.list_audit(namespace, after=after, limit=page)
        if records:
            if not check.feed(records):
                return check.finish(None)  # broken: the head says nothing more
            after = records[-1].seq
        if len(records) == page:
            continue
        head = await log.audit_head(namespace)
        if head is None or head.seq <= after or not records:
            return check.finish(head)
