"""Verifying a tenant's audit chain: the first record that breaks it, and how.

A pure walk over the records in their order, with the chain's head at the end;
it reads nothing itself. Feed it page by page (:class:`ChainCheck`) or give it
all at once (:func:`verify_chain`). The first bad record is named by its number,
with what is wrong with it:

- ``missing``: the record is not there (after record N comes N+2, the log starts
  past 1, or it ends before its head): a record was removed.
- ``unlinked``: the record names another previous hash than the record before it
  has: a record was inserted, removed or moved before it (two records swapped
  break here at the first of them).
- ``altered``: the record's hash is not the hash of its fields: it was edited (or
  forged without its hash).
- ``unheaded``: the record is past the chain's head, or the chain's last hash is
  not the head's: it was added, or edited and hashed again, outside the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from agentrt._text import count
from agentrt.observe.audit import GENESIS, AuditHead, AuditRecord, record_hash

__all__ = ["AuditBreak", "AuditVerdict", "BreakKind", "ChainCheck", "verify_chain"]

BreakKind = Literal["missing", "unlinked", "altered", "unheaded"]


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """The first bad record of a chain: its number, what is wrong, and why it says so."""

    seq: int
    kind: BreakKind
    detail: str


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """What a tenant's chain is: how many records were checked, the last good hash,
    and the first bad record if any."""

    namespace: str
    records: int
    head: str | None
    broken: AuditBreak | None = None

    @property
    def ok(self) -> bool:
        """Whether the chain is whole."""
        return self.broken is None

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON data: ``ok``, ``records``, ``head``, ``broken`` (``seq``,
        ``kind``, ``detail``, or null) and its ``message``."""
        b = self.broken
        broken = None if b is None else {"seq": b.seq, "kind": b.kind, "detail": b.detail}
        return {
            "namespace": self.namespace, "ok": self.ok, "records": self.records,
            "head": self.head, "broken": broken, "message": self.message(),
        }  # fmt: skip

    def message(self) -> str:
        """One line: the chain is whole (with its head), or where it breaks and why."""
        if self.broken is None:
            if self.records == 0:
                return f"audit log of {self.namespace!r}: no records"
            return (
                f"audit log of {self.namespace!r}: {count(self.records, 'record')} intact, "
                f"head {self.head}"
            )
        b = self.broken
        return f"audit log of {self.namespace!r} is broken at record {b.seq}: {b.detail}"


class ChainCheck:
    """A walk along one tenant's chain, fed its records in order, a page at a time."""

    def __init__(self, namespace: str) -> None:
        """Start at the chain's beginning: record 1, after :data:`GENESIS`."""
        self.namespace = namespace
        self._next = 1
        self._prev = GENESIS
        self._checked = 0
        self.broken: AuditBreak | None = None

    def feed(self, records: Iterable[AuditRecord]) -> bool:
        """Check the next records; ``False`` once the chain is found broken (stop)."""
        for record in records:
            if self.broken is not None:
                return False
            self.broken = self._check(record)
            if self.broken is None:
                self._next = record.seq + 1
                self._prev = record.hash
                self._checked += 1
        return self.broken is None

    def _check(self, r: AuditRecord) -> AuditBreak | None:
        expected = self._next
        if r.namespace != self.namespace:
            return AuditBreak(r.seq, "unlinked", f"it belongs to tenant {r.namespace!r}")
        if r.seq > expected:
            after = f"record {expected - 1} is followed by record {r.seq}"
            if expected == 1:
                after = f"the log starts at record {r.seq}"
            return AuditBreak(expected, "missing", f"it is not there ({after}): it was removed")
        if r.seq < expected:
            return AuditBreak(r.seq, "unlinked", f"it comes after record {expected - 1}")
        if r.prev_hash != self._prev:
            before = "the log's start" if expected == 1 else f"record {expected - 1}"
            return AuditBreak(
                r.seq,
                "unlinked",
                f"it does not follow {before} (its previous hash is not that record's): "
                "a record was inserted, removed or moved before it",
            )
        if record_hash(r) != r.hash:
            return AuditBreak(
                r.seq, "altered", "its hash does not match its contents: it was edited or forged"
            )
        return None

    def finish(self, head: AuditHead | None) -> AuditVerdict:
        """The verdict, once every record was fed, given the chain's ``head``."""
        broken = self.broken or self._check_head(head)
        last = self._prev if self._checked else None
        return AuditVerdict(self.namespace, self._checked, last, broken)

    def _check_head(self, head: AuditHead | None) -> AuditBreak | None:
        last = self._next - 1
        if head is None:
            if last == 0:
                return None
            return AuditBreak(last, "unheaded", "the log has no head: it was removed")
        if head.seq > last:
            ends = f"the log ends at record {last}" if last else "the log has no record"
            return AuditBreak(
                last + 1,
                "missing",
                f"it is not there ({ends}, its head is record {head.seq}): it was removed",
            )
        if head.seq < last:
            return AuditBreak(
                head.seq + 1,
                "unheaded",
                f"it is past the log's head (record {head.seq}): it was added outside the store",
            )
        if head.hash != self._prev:
            return AuditBreak(
                last,
                "unheaded",
                "its hash is not the head's: it was edited and hashed again",
            )
        return None


def verify_chain(
    namespace: str, records: Iterable[AuditRecord], head: AuditHead | None
) -> AuditVerdict:
    """Walk ``namespace``'s records (in seq order) and its head: the chain is whole, or
    the verdict names the first bad record and why."""
    check = ChainCheck(namespace)
    check.feed(records)
    return check.finish(head)
