"""The run listings and counts the HTTP API and A2A ask for, each with the index that
must serve it (migrations 0008 and 0010), for the backends' query-plan tests."""

from __future__ import annotations

from agentrt.state._run_query import RunFilter
from agentrt.state.records import RunCursor

# A few statuses: a planner may walk the tenant's runs newest first and filter them,
# or (PostgreSQL) take a small index of the active runs (the queue's, the running's).
_ACTIVE = "runs_namespace_status|runs_namespace|runs_claimable|runs_queue|runs_running"
# An agent's runs the last updated first (A2A's ListTasks), paged and bounded by update.
_UPDATED = "runs_namespace_agent_updated"
# A rare status, or one principal's runs: the planner may take their index and sort.
_RARE = f"{_UPDATED}|runs_namespace_status"
_MINE = f"{_UPDATED}|runs_namespace_principal"


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
        (RunFilter(namespace="t", parent="run_p", principal="key:w1"), "runs_parent"),
        (RunFilter(namespace="t", session_id="s", order="newest"), "runs_session_turn"),
        (
            RunFilter(namespace="t", session_id="s", statuses=["running"]),
            "runs_session_turn|runs_claimable|runs_running",
        ),
        (RunFilter(namespace="w", agent="bot", order="updated"), _UPDATED),
        (RunFilter(namespace="w", agent="bot", order="updated", before=cursor), _UPDATED),
        (RunFilter(namespace="w", agent="bot", order="updated", updated_after=23900.0), _UPDATED),
        (RunFilter(namespace="w", agent="bot", statuses=["succeeded"], order="updated"), _UPDATED),
        (
            RunFilter(namespace="w", agent="bot", statuses=["waiting_approval"], order="updated"),
            _RARE,
        ),
        (RunFilter(namespace="w", agent="bot", principal="key:w1", order="updated"), _MINE),
        (RunFilter(namespace="t", session_id="s", order="updated"), "runs_session_turn"),
    ]


def counts() -> list[tuple[RunFilter, str]]:
    """Each filter ListTasks counts (its ``totalSize``) and the index that must serve it."""
    return [
        (RunFilter(namespace="w", agent="bot"), f"{_UPDATED}|runs_namespace_agent"),
        (RunFilter(namespace="w", agent="bot", updated_after=23900.0), _UPDATED),
        (
            RunFilter(namespace="w", agent="bot", statuses=["succeeded"]),
            f"{_RARE}|runs_namespace_agent",
        ),
        (
            RunFilter(namespace="w", agent="bot", principal="key:w1"),
            f"{_MINE}|runs_namespace_agent",
        ),
        (RunFilter(namespace="t", session_id="s", agent="a10"), "runs_session_turn"),
    ]
