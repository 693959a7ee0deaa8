"""The audit log's records and their hash chain: what a record holds, how it is hashed.

Each tenant has one chain. Its records are numbered 1, 2, 3, ... without a gap;
each holds the hash of the record before it (:data:`GENESIS` for the first) and
its own hash, SHA-256 over a canonical encoding of every field but the hash
itself: the tenant, the number, the time, the kind, who, the run, the agent, the
run's event it reflects, the caller's key, the body (canonical JSON, sorted keys)
and the previous hash. Changing any field of a record changes its hash; removing,
inserting or moving a record breaks a number or a link. The chain's head (its
last number and hash, :class:`AuditHead`) says where it ends.

A chain without a secret proves only that nobody rewrote a record without also
rewriting every hash after it and the head: someone able to do that is caught by
comparing the head with a copy kept elsewhere (``agentrt audit verify`` prints it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agentrt import _json

__all__ = [
    "AUDIT_KINDS",
    "GENESIS",
    "AuditHead",
    "AuditRecord",
    "canonical_body",
    "record_hash",
    "seal",
]

GENESIS: Final = "0" * 64
"""The previous hash of a tenant's first record."""

AUDIT_KINDS: Final[Mapping[str, str]] = {
    "run.submitted": "a run was started (a query, a session's turn, a child run, a fork)",
    "tool.call": "a tool call was made (each attempt), with its arguments or their digest",
    "tool.refused": "a tool call was refused before it ran (a quota)",
    "tool.approved": "a person approved a tool call",
    "tool.denied": "a person denied a tool call",
    "tool.resolved": "a person decided a tool call whose outcome was unknown",
    "run.budget_exhausted": "a run was stopped by a budget",
    "run.reopened": "a run stopped by a budget was raised and put back in the queue",
    "policy.refused": "a Policy refused something",
    "resource.applied": "a resource was created or changed",
    "resource.deleted": "a resource was deleted",
    "key.created": "an API key of the tenant was made (its id, name and role; never its secret)",
    "key.revoked": "an API key of the tenant was revoked",
}
"""Every kind of record, and what one says."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record of a tenant's audit log, as stored.

    ``principal`` is who did it (an API key's ``key:NAME``, a user's name; ``None``
    when nobody is known); for a run's own steps, who started the run. ``run_id``
    and ``event_seq`` name the event of the run's log it reflects, if any.
    ``body_json`` is the canonical JSON that was hashed; :attr:`body` reads it.
    """

    namespace: str
    seq: int
    ts: float
    kind: str
    principal: str | None
    run_id: str | None
    agent: str | None
    event_seq: int | None
    ref: str | None
    body_json: str
    prev_hash: str
    hash: str

    @property
    def body(self) -> dict[str, Any]:
        """What the record says, by kind; a body that is no JSON object (a damaged
        record) reads as ``{"unreadable": TEXT}``."""
        try:
            value = _json.loads(self.body_json)
        except ValueError:
            value = None
        return value if isinstance(value, dict) else {"unreadable": self.body_json}

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data, with its body read."""
        return {
            "namespace": self.namespace,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "principal": self.principal,
            "run_id": self.run_id,
            "agent": self.agent,
            "event_seq": self.event_seq,
            "ref": self.ref,
            "body": self.body,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditHead:
    """Where a tenant's chain ends: its last record's number and hash."""

    namespace: str
    seq: int
    hash: str


def canonical_body(body: Mapping[str, Any]) -> str:
    """A body as the JSON that is stored and hashed: compact, keys sorted."""
    return _json.dumps_str(body)


def record_hash(record: AuditRecord) -> str:
    """The hash ``record`` must carry: SHA-256 (hex) over its fields and previous hash."""
    return _digest(
        record.namespace, record.seq, record.ts, record.kind, record.principal,
        record.run_id, record.agent, record.event_seq, record.ref, record.body_json,
        record.prev_hash,
    )  # fmt: skip


def seal(
    namespace: str,
    seq: int,
    ts: float,
    kind: str,
    *,
    principal: str | None,
    run_id: str | None,
    agent: str | None,
    event_seq: int | None,
    ref: str | None,
    body_json: str,
    prev_hash: str,
) -> AuditRecord:
    """The record of these fields, chained after ``prev_hash``, with its hash."""
    ts = float(ts)  # as the store reads it back: an int would encode otherwise
    digest = _digest(
        namespace, seq, ts, kind, principal, run_id, agent, event_seq, ref, body_json, prev_hash
    )
    return AuditRecord(
        namespace, seq, ts, kind, principal, run_id, agent, event_seq, ref, body_json,
        prev_hash, digest,
    )  # fmt: skip


def _digest(*fields: Any) -> str:
    # A JSON array: each field's type and bounds are unambiguous (no separator to forge).
    return hashlib.sha256(_json.dumps(["agentrt-audit-1", *fields])).hexdigest()
