"""Tool quotas against a real SQLite store: per run, per session, per tenant per day."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

from agentrt.spec.resources import ToolSpec
from agentrt.state import EventDraft, NewRun, SessionRecord, SqliteStore
from agentrt.tools.quotas import day_start, quota_refusal

# 2024-03-10 12:00:00 UTC, and the day's first and last second.
NOON = datetime(2024, 3, 10, 12, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2024, 3, 10, tzinfo=UTC).timestamp()
LAST_SECOND = MIDNIGHT + 86_400 - 1

_ids = count()


def tool(**quotas: int) -> ToolSpec:
    return ToolSpec.model_validate(
        {"kind": "python", "callable": "tests.sample_tools:add", "quotas": quotas}
    )


async def record_calls(
    store: SqliteStore,
    toolset: str,
    *times: float,
    namespace: str = "default",
    session_id: str | None = None,
) -> None:
    """A run in ``namespace`` (and session) that recorded one call per time."""
    if session_id is not None:
        await store.create_session(SessionRecord(session_id, namespace, 0.0))
    run_id = f"run{next(_ids)}"
    await store.create_run(NewRun(run_id, namespace, "bot", 0.0, session_id))
    drafts = [
        EventDraft("tool.call", {"id": "c", "name": toolset, "args": "{}", "toolset": toolset}, t)
        for t in times
    ]
    await store.append_events(run_id, drafts, expected_seq=0)


async def refusal(store: SqliteStore, spec: ToolSpec, **kw: Any) -> str | None:
    kw.setdefault("toolset", "search")
    kw.setdefault("namespace", "default")
    kw.setdefault("session_id", None)
    kw.setdefault("calls_in_run", 0)
    kw.setdefault("now", NOON)
    return await quota_refusal(store, spec=spec, **kw)


def test_day_start_is_utc_midnight() -> None:
    assert day_start(NOON) == MIDNIGHT
    assert day_start(MIDNIGHT) == MIDNIGHT
    assert day_start(LAST_SECOND) == MIDNIGHT
    assert day_start(LAST_SECOND + 1) == MIDNIGHT + 86_400


async def test_no_quotas_allow_everything(store: SqliteStore) -> None:
    await record_calls(store, "search", NOON, NOON, session_id="s1")
    assert await refusal(store, tool(), calls_in_run=1000, session_id="s1") is None


async def test_per_run(store: SqliteStore) -> None:
    spec = tool(per_run=3)
    assert await refusal(store, spec, calls_in_run=2) is None
    message = await refusal(store, spec, calls_in_run=3)
    assert message == "quota exceeded: Tool 'search' allows 3 calls per run (quotas.per_run)"
    assert await refusal(store, spec, calls_in_run=2, pending=1) == message
    single = await refusal(store, tool(per_run=1), calls_in_run=1)
    assert single is not None and "allows 1 call per run" in single
    assert await refusal(store, tool(per_run=0)) is not None, "0 forbids every call"


async def test_per_session_counts_the_session_only(store: SqliteStore) -> None:
    spec = tool(per_session=2)
    await record_calls(store, "search", NOON, session_id="s1")
    await record_calls(store, "search", NOON, session_id="s2")
    await record_calls(store, "search", NOON, NOON)  # no session
    await record_calls(store, "fetch", NOON, NOON, session_id="s3")
    assert await refusal(store, spec, session_id="s1") is None
    assert await refusal(store, spec, session_id="s1", pending=1) is not None
    # A second run of the same session adds to the session's count.
    await store.create_run(NewRun("second", "default", "bot", 0.0, "s1"))
    await store.append_events(
        "second",
        [EventDraft("tool.call", {"toolset": "search", "name": "search"}, NOON)],
        expected_seq=0,
    )
    message = await refusal(store, spec, session_id="s1")
    assert message == (
        "quota exceeded: Tool 'search' allows 2 calls per session (quotas.per_session)"
    )
    assert await refusal(store, spec, session_id="s2") is None
    assert await refusal(store, spec, session_id="s3") is None, "other Tools do not count"
    assert await refusal(store, spec, session_id=None) is None, "no session, no session quota"


async def test_per_tenant_per_day(store: SqliteStore) -> None:
    spec = tool(per_tenant_per_day=3)
    await record_calls(store, "search", MIDNIGHT - 1, MIDNIGHT - 3600)  # yesterday
    await record_calls(store, "search", MIDNIGHT, NOON, session_id="s1")  # today
    await record_calls(store, "search", NOON, NOON, NOON, namespace="acme")
    await record_calls(store, "fetch", NOON)
    assert await refusal(store, spec) is None
    await record_calls(store, "search", LAST_SECOND)
    message = await refusal(store, spec)
    assert message == (
        "quota exceeded: Tool 'search' allows 3 calls per day in namespace 'default' "
        "(quotas.per_tenant_per_day); the count restarts at 00:00 UTC"
    )
    assert await refusal(store, spec, now=LAST_SECOND) == message
    assert await refusal(store, spec, now=LAST_SECOND + 1) is None, "a new UTC day"
    acme = await refusal(store, spec, namespace="acme")
    assert acme is not None and "namespace 'acme'" in acme
    assert await refusal(store, spec, namespace="other") is None


async def test_first_limit_reached_is_reported(store: SqliteStore) -> None:
    await record_calls(store, "search", NOON, NOON, session_id="s1")
    spec = tool(per_run=2, per_session=2, per_tenant_per_day=2)
    run = await refusal(store, spec, session_id="s1", calls_in_run=2)
    assert run is not None and "(quotas.per_run)" in run
    session = await refusal(store, spec, session_id="s1", calls_in_run=1)
    assert session is not None and "(quotas.per_session)" in session
    day = await refusal(store, spec, session_id="s2", calls_in_run=1)
    assert day is not None and "(quotas.per_tenant_per_day)" in day
