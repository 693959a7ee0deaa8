"""The run listings the HTTP API asks for, each with the index that must serve it
(migration 0008), for the backends' query-plan tests."""

from __future__ import annotations

from agentrt.state._run_query import RunFilter
from agentrt.state.records import RunCursor

# A few statuses: a planner may walk the tenant's runs newest first and filter them,
# or (PostgreSQL) take the small index of the active runs.
_ACTIVE = "runs_namespace_status|runs_namespace|runs_claimable"


def listings(cursor: RunCursor) -> list[tuple[RunFilter, str]]:
    """Each filter of a page of runs and the index its query must use (``a|b``: either)."""
    return [
        (RunFilter(), "runs_created"),
        (RunFilter(before=cursor), "runs_created"),
        (RunFilter(namespace="t"), "runs_namespace"),
        (RunFilter(namespace="t", before=cursor), "runs_namespace"),
        (RunFilter(namespace="t", created_after=1.0, created_before=9.0), "runs_namespace"),
        (RunFilter(namespace="t", statuses=["waiting_approval"]), "runs_namespace_status"),
        (RunFilter(namespace="t", statuses=["queued", "running"]), _ACTIVE),
        (RunFilter(namespace="t", agent="bot", before=cursor), "runs_namespace_agent"),
        (RunFilter(namespace="t", principal="key:a", before=cursor), "runs_namespace_principal"),
        (RunFilter(namespace="t", parent="run_p"), "runs_parent"),
        (RunFilter(namespace="t", parent="run_p", principal="key:p0"), "runs_parent"),
        (RunFilter(namespace="t", session_id="s", order="newest"), "runs_session_turn"),
        (
            RunFilter(namespace="t", session_id="s", statuses=["running"]),
            "runs_session_turn|runs_claimable",
        ),
    ]
