"""The run listings part of the store conformance suite (listed in
``conformance.CHECKS``): runs listed the last updated first, paged by ``(updated_at,
id)`` and bounded by ``updated_after``, and runs counted by every filter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest

from agentrt.errors import UsageError
from agentrt.state.base import EventDraft, NewRun, RunStatus, RunUpdate, SessionRecord, Store

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["RUN_LIST_CHECKS"]


def _run(run_id: str, created_at: float, **kw: Any) -> NewRun:
    kw.setdefault("namespace", "default")
    kw.setdefault("agent", "bot")
    return NewRun(id=run_id, created_at=created_at, **kw)


async def _write(store: Store, run_id: str, at: float, status: str | None = None) -> None:
    """An event at time ``at``: the run's ``updated_at`` becomes ``at``."""
    run = await store.get_run(run_id)
    assert run is not None
    update = None if status is None else RunUpdate(status=cast(RunStatus, status))
    await store.append_events(
        run_id, [EventDraft("note", {}, at)], expected_seq=run.last_seq, update=update
    )


async def check_list_runs_last_updated_first(h: Harness) -> None:
    """``order="updated"`` lists by ``(updated_at, id)`` descending, whatever the order
    of creation, with every other filter; ``updated_after`` is exclusive."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    for run_id, at, kw in (
        ("a", 10.0, {}),
        ("b", 20.0, {"principal": "key:x"}),
        ("c", 30.0, {"session_id": "s", "principal": "key:x"}),
        ("d", 40.0, {"agent": "other"}),
        ("e", 50.0, {"namespace": "team"}),
        ("f", 60.0, {"session_id": "s"}),
    ):
        await s.create_run(_run(run_id, at, **kw))
    await _write(s, "a", 90.0, "succeeded")  # the oldest is now the last updated
    await _write(s, "c", 80.0)
    await _write(s, "e", 95.0)
    await _write(s, "b", 80.0)  # the same time as c: the id decides

    async def ids(**kw: Any) -> list[str]:
        return [r.id for r in await s.list_runs(order="updated", **kw)]

    assert await ids() == ["e", "a", "c", "b", "f", "d"]
    assert await ids(namespace="default", agent="bot") == ["a", "c", "b", "f"]
    assert await ids(namespace="default", agent="bot", limit=2) == ["a", "c"]
    assert await ids(namespace="default", agent="bot", statuses=["queued"]) == ["c", "b", "f"]
    assert await ids(namespace="default", agent="bot", statuses=["succeeded"]) == ["a"]
    assert await ids(namespace="default", agent="bot", statuses=[]) == []
    assert await ids(namespace="default", agent="bot", principal="key:x") == ["c", "b"]
    assert await ids(session_id="s") == ["c", "f"], "a session's too, not by turn"
    assert await ids(namespace="default", agent="bot", updated_after=80.0) == ["a"]
    assert await ids(namespace="default", agent="bot", updated_after=79.9) == ["a", "c", "b"]
    assert await ids(updated_after=95.0) == []
    assert await ids(updated_after=60.0, created_after=20.0) == ["e", "c", "b"]
    # The other orders are as they were: the filter bounds them too.
    assert [r.id for r in await s.list_runs(updated_after=79.0)] == ["e", "c", "b", "a"]
    assert [r.id for r in await s.list_runs(session_id="s", updated_after=70.0)] == ["c"]
    cursor = (80.0, "c")
    assert await ids(namespace="default", agent="bot", before=cursor) == ["b", "f"]
    assert await ids(namespace="default", agent="bot", before=(80.0, "b")) == ["f"]
    assert await ids(namespace="default", agent="bot", before=(90.0, "")) == ["c", "b", "f"]
    assert await ids(before=(60.0, "f")) == ["d"]
    assert await ids(namespace="default", agent="bot", before=cursor, updated_after=70.0) == ["b"]
    with pytest.raises(UsageError):
        await s.list_runs(session_id="s", order="turn", before=cursor)


async def check_list_runs_updated_pages(h: Harness) -> None:
    """Paged by ``(updated_at, id)``, the last updated first, every run comes exactly
    once, ties included; a run written while paging moves to the front: it is never
    listed twice, and the runs after the cursor keep their pages."""
    s = h.store
    made = []
    for i in range(23):
        run, _ = await s.create_run(_run(f"r{i:02d}", 100.0 - i))
        # Updated in another order than created, three at a time together.
        await _write(s, run.id, 200.0 + (i * 7) % 23 // 3)
        made.append(await s.get_run(run.id))
    await s.create_run(_run("other", 500.0, agent="other"))
    await s.create_run(_run("elsewhere", 500.0, namespace="team"))
    expected = [r.id for r in sorted(made, key=lambda r: (r.updated_at, r.id), reverse=True)]
    seen: list[str] = []
    cursor = None
    moved = ""
    while True:
        page = await s.list_runs(
            namespace="default", agent="bot", order="updated", before=cursor, limit=4
        )
        seen += [r.id for r in page]
        if len(page) < 4:
            break
        cursor = (page[-1].updated_at, page[-1].id)
        # A run already listed is written to: it moves to the front, not onto a later page.
        moved = page[0].id
        await _write(s, moved, 300.0 + len(seen))
    assert seen == expected
    first = await s.list_runs(namespace="default", agent="bot", order="updated", limit=1)
    assert [r.id for r in first] == [moved]


async def check_count_runs(h: Harness) -> None:
    """``count_runs`` counts what ``list_runs`` lists with the same filters, over every
    page; a filter that matches nothing counts 0."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    for i in range(12):
        kw: dict[str, Any] = {
            "agent": "bot" if i % 3 else "other",
            "principal": f"key:p{i % 2}",
            "namespace": "team" if i == 11 else "default",
        }
        if i % 4 == 0:
            kw["session_id"] = "s"
        if i == 5:
            kw["parent_run"] = "r00"
        await s.create_run(_run(f"r{i:02d}", 10.0 + i, **kw))
        if i % 5 == 0:
            await _write(s, f"r{i:02d}", 100.0 + i, "succeeded")
    filters: list[dict[str, Any]] = [
        {},
        {"namespace": "default"},
        {"namespace": "team"},
        {"namespace": "nobody"},
        {"namespace": "default", "agent": "bot"},
        {"namespace": "default", "agent": "bot", "principal": "key:p1"},
        {"namespace": "default", "agent": "bot", "statuses": ["succeeded"]},
        {"namespace": "default", "statuses": ["queued", "succeeded"]},
        {"session_id": "s"},
        {"session_id": "s", "agent": "other"},
        {"parent": "r00"},
        {"created_after": 12.0, "created_before": 18.0},
        {"namespace": "default", "agent": "bot", "updated_after": 50.0},
        {"updated_after": 105.0},
    ]
    for where in filters:
        listed = await s.list_runs(**where, limit=100)
        assert await s.count_runs(**where) == len(listed), where
    assert await s.count_runs() == 12
    assert await s.count_runs(namespace="default", agent="bot") == 7
    assert await s.count_runs(namespace="default", agent="bot", updated_after=50.0) == 2
    assert await s.count_runs(statuses=[]) == 0
    assert await s.count_runs(agent="nobody") == 0


RUN_LIST_CHECKS = [
    check_list_runs_last_updated_first,
    check_list_runs_updated_pages,
    check_count_runs,
]
"""The run listing checks, in a stable order."""
