"""The SQLite store's run listings and counts, which :class:`SqliteStore` takes: the
filters and orders of :mod:`agentrt.state._run_query`, read on the writer thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from agentrt.state._run_query import RunFilter
from agentrt.state._sqlite_ops import Ops
from agentrt.state._sqlite_part import SqlitePart
from agentrt.state._sqlite_writer import READ
from agentrt.state.records import RunCursor, RunOrder, RunRecord

__all__ = ["RunListMethods"]

T = TypeVar("T")


class RunListMethods(SqlitePart):
    """``list_runs`` and ``count_runs`` of :class:`~agentrt.state.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        @property
        def _ops(self) -> Ops: ...

    async def list_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        parent: str | None = None,
        statuses: Sequence[str] | None = None,
        agent: str | None = None,
        principal: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        updated_after: float | None = None,
        before: RunCursor | None = None,
        order: RunOrder | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first by ``(created_at, id)`` (a session's: by turn), filtered
        and paged as :meth:`Store.list_runs <agentrt.state.base.Store.list_runs>` says."""
        where = RunFilter(
            namespace, session_id, parent, statuses, agent, principal,
            created_after, created_before, updated_after, before, order,
        )  # fmt: skip
        return await self._submit(READ, self._ops.list_runs, where, limit)

    async def count_runs(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        parent: str | None = None,
        statuses: Sequence[str] | None = None,
        agent: str | None = None,
        principal: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        updated_after: float | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` with the same filters lists, over all pages."""
        where = RunFilter(
            namespace, session_id, parent, statuses, agent, principal,
            created_after, created_before, updated_after,
        )  # fmt: skip
        return await self._submit(READ, self._ops.count_runs, where)
