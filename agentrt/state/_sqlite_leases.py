"""The SQLite store's leases and cancellation requests (see
:class:`~agentrt.state.base.Store`), as methods :class:`~agentrt.state.sqlite.SqliteStore`
takes. Grants and releases are serialised by SQLite's single writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_watch import (
    touched_claimed,
    touched_leased,
    touched_one,
    touched_released,
)
from agentrt.state._sqlite_writer import READ, WRITE
from agentrt.state.records import RunRecord

if TYPE_CHECKING:
    from agentrt.state._sqlite_ops import Ops

__all__ = ["LeaseMethods"]

T = TypeVar("T")


class LeaseMethods(SqlitePart):
    """The lease and cancellation methods of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        ttl_s: float,
        *,
        now: float,
        replacing: str | None = None,
    ) -> RunRecord | None:
        """Take the run's lease if free, expired, already ``owner``'s, or held by
        ``replacing``: a compare-and-set on the holder, in one write transaction
        (see :meth:`Store.acquire_lease <agentrt.state.base.Store.acquire_lease>`)."""
        return await self._write(
            touched_leased, self._ops.acquire_lease, run_id, owner, ttl_s, now, replacing
        )

    async def renew_lease(
        self, run_id: str, owner: str, ttl_s: float, *, now: float, token: int | None = None
    ) -> bool:
        """Extend the lease to ``now + ttl_s``; ``False`` if ``owner`` no longer holds
        it (under ``token``, if given)."""
        return await self._submit(WRITE, self._ops.renew_lease, run_id, owner, ttl_s, now, token)

    async def renew_leases(
        self, run_ids: Sequence[str], owner: str, ttl_s: float, *, now: float
    ) -> set[str]:
        """Extend every lease of ``run_ids`` that ``owner`` holds, in one transaction."""
        if not run_ids:
            return set()
        return await self._submit(WRITE, self._ops.renew_leases, list(run_ids), owner, ttl_s, now)

    async def release_lease(self, run_id: str, owner: str, *, token: int | None = None) -> None:
        """Give the lease up (no-op unless ``owner`` holds it, under ``token`` if given)."""
        await self._write(touched_released(run_id), self._ops.release_lease, run_id, owner, token)

    async def claim_runs(
        self, owner: str, ttl_s: float, *, now: float, limit: int = 10
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runs that are queued or running with no live lease.

        Oldest first. Each claimed run is ``running`` and leased to ``owner``.
        Two concurrent callers never claim the same run: claims are serialised
        by SQLite's single writer.
        """
        return await self._write(touched_claimed, self._ops.claim_runs, owner, ttl_s, now, limit)

    async def request_cancel(
        self,
        run_id: str,
        *,
        cause: str | None = None,
        by: str | None = None,
        now: float | None = None,
    ) -> RunRecord:
        """Mark the run for cancellation (asked ``by`` at ``now`` for ``cause``); see
        :meth:`Store.request_cancel <agentrt.state.base.Store.request_cancel>`
        (``NotFoundError`` for an unknown run)."""
        cancel = self._ops.request_cancel
        return await self._write(touched_one(run_id), cancel, run_id, cause, by, now)

    async def cancel_requests(self, run_ids: Sequence[str]) -> set[str]:
        """Which of ``run_ids`` are unfinished and have their cancellation requested."""
        if not run_ids:
            return set()
        return await self._submit(READ, self._ops.cancel_requests, list(run_ids))
