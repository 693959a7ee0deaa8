"""The store conformance suite: every backend must pass it unchanged.

Each check is ``async def check_xxx(h: Harness) -> None`` and is listed in
:data:`CHECKS`. A backend's test module builds a fresh, empty store per check
and runs every check against it, e.g.::

    @pytest.mark.parametrize("check", CHECKS, ids=check_id)
    async def test_conformance(check, harness):
        await check(harness)

Checks only use the :class:`~agentrt.state.base.Store` protocol, plus the two
backend hooks in :class:`Harness`: counting stored blobs (to observe dedup
and gc) and opening a second store on the same database (to race two workers).

Where the contract in ``agentrt/state/base.py`` leaves a choice open, the
checks pin the answer every backend gives; each such place says
"Interpretation" in its docstring.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest

from agentrt.errors import CancelRequested, ConflictError, LeaseLost, NotFoundError, UsageError
from agentrt.state.base import (
    TERMINAL_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    RunBlob,
    RunStatus,
    RunUpdate,
    SessionRecord,
    Store,
    Usage,
)
from agentrt.state.watch import QUEUE, RunWatch
from tests.state.audit_conformance import AUDIT_CHECKS
from tests.state.circuit_conformance import CIRCUIT_CHECKS
from tests.state.ledger_conformance import LEDGER_CHECKS
from tests.state.queue_conformance import QUEUE_CHECKS
from tests.state.rate_limit_conformance import RATE_LIMIT_CHECKS
from tests.state.run_list_conformance import RUN_LIST_CHECKS
from tests.state.session_conformance import SESSION_CHECKS

__all__ = ["CHECKS", "Harness", "check_id"]

# Comfortably above any sane inline limit, so the blob path is taken everywhere.
BIG = 64 * 1024


@dataclass
class Harness:
    """What a check gets: a fresh empty store plus two backend-specific hooks.

    The blob counts assume the store's inline limit keeps payloads of a few
    hundred bytes inline and sends the suite's 64 KiB payloads to the blob table.

    Attributes:
        store: An open, empty store; the test module closes it afterwards.
        count_blobs: Returns how many distinct payloads the blob table holds.
        open_peer: Opens another store on the same database (a second worker);
            the check closes it.
    """

    store: Store
    count_blobs: Callable[[], Awaitable[int]]
    open_peer: Callable[[], Awaitable[Store]]


def check_id(check: Callable[..., Any]) -> str:
    """A readable pytest id for a check."""
    return check.__name__.removeprefix("check_")


def new_run(run_id: str, created_at: float = 100.0, **kw: Any) -> NewRun:
    """A run in namespace ``default`` unless ``kw`` says otherwise."""
    kw.setdefault("namespace", "default")
    kw.setdefault("agent", "helper")
    return NewRun(id=run_id, created_at=created_at, **kw)


def ev(type_: str = "note", ts: float = 100.0, step: int | None = None, **data: Any) -> EventDraft:
    """A small event draft."""
    return EventDraft(type=type_, data=data, ts=ts, step=step)


def big_payload(tag: str) -> dict[str, Any]:
    """A payload far over any inline limit; equal tags give equal payloads."""
    return {"tag": tag, "text": (tag * (BIG // len(tag) + 1))[:BIG], "n": [1, 2.5, None, "é"]}


async def finish(store: Store, run_id: str, at: float, status: str = "succeeded") -> None:
    """Append a terminal event at time ``at`` that ends the run."""
    run = await store.get_run(run_id)
    assert run is not None
    await store.append_events(
        run_id,
        [ev("run.finished", ts=at)],
        expected_seq=run.last_seq,
        update=RunUpdate(status=cast(RunStatus, status)),
    )


# --- protocol ------------------------------------------------------------------


async def check_implements_protocol(h: Harness) -> None:
    """The store satisfies the runtime-checkable ``Store`` protocol."""
    assert isinstance(h.store, Store)


async def check_close_is_idempotent(h: Harness) -> None:
    """``close`` may be called twice; another store on the same database sees the data."""
    peer = await h.open_peer()
    await peer.create_run(new_run("r1"))
    await peer.close()
    await peer.close()
    assert await h.store.get_run("r1") is not None


# --- resources -----------------------------------------------------------------


async def check_resource_generations(h: Harness) -> None:
    """Generation is 1 on insert, unchanged for an equal body, +1 for a changed one."""
    s = h.store
    body = {"apiVersion": "agentrt/v1", "kind": "Agent", "spec": {"model": "m", "n": [1, 2]}}
    r1 = await s.put_resource("Agent", "default", "a", body, now=10.0)
    assert (r1.kind, r1.namespace, r1.name, r1.generation) == ("Agent", "default", "a", 1)
    assert r1.body == body
    assert r1.created_at == 10.0 and r1.updated_at == 10.0

    same = {"spec": {"n": [1, 2], "model": "m"}, "kind": "Agent", "apiVersion": "agentrt/v1"}
    r2 = await s.put_resource("Agent", "default", "a", same, now=20.0)
    assert r2.generation == 1
    assert r2.body == body
    assert r2.created_at == 10.0

    changed = {**body, "spec": {"model": "other"}}
    r3 = await s.put_resource("Agent", "default", "a", changed, now=30.0)
    assert r3.generation == 2
    assert r3.body == changed
    assert r3.created_at == 10.0 and r3.updated_at == 30.0

    got = await s.get_resource("Agent", "default", "a")
    assert got == r3
    r4 = await s.put_resource("Agent", "default", "a", body, now=40.0)
    assert r4.generation == 3, "changing back is a change too"


async def check_resource_get_list_delete(h: Harness) -> None:
    """get returns None when absent; list filters and orders; delete reports existence."""
    s = h.store
    assert await s.get_resource("Agent", "default", "nope") is None
    for kind, ns, name in [
        ("Tool", "default", "b"),
        ("Agent", "team", "a"),
        ("Agent", "default", "z"),
        ("Agent", "default", "a"),
    ]:
        await s.put_resource(kind, ns, name, {"kind": kind, "name": name}, now=1.0)

    keys = [(r.kind, r.namespace, r.name) for r in await s.list_resources()]
    assert keys == [
        ("Agent", "default", "a"),
        ("Agent", "default", "z"),
        ("Agent", "team", "a"),
        ("Tool", "default", "b"),
    ]
    assert [r.name for r in await s.list_resources(kind="Agent", namespace="default")] == ["a", "z"]
    assert [r.kind for r in await s.list_resources(namespace="default")] == [
        "Agent",
        "Agent",
        "Tool",
    ]
    assert [r.namespace for r in await s.list_resources(kind="Agent")] == [
        "default",
        "default",
        "team",
    ]
    assert await s.list_resources(kind="Model") == []

    assert await s.delete_resource("Agent", "default", "a") is True
    assert await s.delete_resource("Agent", "default", "a") is False
    assert await s.get_resource("Agent", "default", "a") is None
    assert len(await s.list_resources()) == 3
    again = await s.put_resource("Agent", "default", "a", {"x": 1}, now=5.0)
    assert again.generation == 1, "a re-created resource starts over"


# --- sessions ------------------------------------------------------------------


async def check_sessions_create_get(h: Harness) -> None:
    """create_session stores the record; creating an existing id returns the stored one."""
    s = h.store
    assert await s.get_session("s1") is None
    rec = SessionRecord(id="s1", namespace="default", created_at=5.0)
    assert await s.create_session(rec) == rec
    assert await s.get_session("s1") == rec

    other = SessionRecord(id="s1", namespace="other", created_at=9.0, next_turn=7)
    assert await s.create_session(other) == rec, "the stored session is returned unchanged"
    assert await s.get_session("s1") == rec

    fork = SessionRecord(
        id="s2", namespace="default", created_at=6.0, parent_session="s1", parent_turn=3
    )
    assert await s.create_session(fork) == fork
    assert await s.get_session("s2") == fork


async def check_session_turns(h: Harness) -> None:
    """Runs in a session take turns 0, 1, 2...; the session's next_turn follows."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    turns = []
    for i in range(3):
        run, created = await s.create_run(new_run(f"r{i}", 10.0 + i, session_id="s"))
        assert created
        turns.append(run.turn)
        assert run.session_id == "s"
    assert turns == [0, 1, 2]
    session = await s.get_session("s")
    assert session is not None and session.next_turn == 3
    stored = await s.get_run("r1")
    assert stored is not None and stored.turn == 1

    loose, _ = await s.create_run(new_run("loose"))
    assert loose.turn is None and loose.session_id is None


async def check_session_turns_concurrent(h: Harness) -> None:
    """Turns are allocated atomically: concurrent creates get distinct, gapless turns."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    results = await asyncio.gather(
        *(s.create_run(new_run(f"r{i}", 10.0, session_id="s")) for i in range(20))
    )
    assert sorted(r.turn for r, _ in results if r.turn is not None) == list(range(20))
    session = await s.get_session("s")
    assert session is not None and session.next_turn == 20


async def check_create_run_unknown_session(h: Harness) -> None:
    """A run naming a missing session raises NotFoundError and writes nothing."""
    s = h.store
    with pytest.raises(NotFoundError):
        await s.create_run(new_run("r", session_id="missing"), [ev()])
    assert await s.get_run("r") is None


async def check_forked_session_turns(h: Harness) -> None:
    """A session created with ``next_turn`` set continues numbering from there."""
    s = h.store
    await s.create_session(SessionRecord(id="a", namespace="default", created_at=1.0))
    fork = SessionRecord(
        id="b", namespace="default", created_at=2.0, parent_session="a", parent_turn=2, next_turn=2
    )
    await s.create_session(fork)
    run, _ = await s.create_run(new_run("r", session_id="b", parent_run="p", fork_step=4))
    assert run.turn == 2
    assert (run.parent_run, run.fork_step) == ("p", 4)


# --- runs ----------------------------------------------------------------------


async def check_create_run_record(h: Harness) -> None:
    """create_run stores every field and appends the first events with seq 1..n."""
    s = h.store
    run, created = await s.create_run(
        new_run("r", 42.0, agent="researcher", parent_run="p", fork_step=3),
        [ev("run.created", 42.0, x=1), ev("input", 42.5, step=0, text="hi")],
    )
    assert created
    assert (run.id, run.namespace, run.agent) == ("r", "default", "researcher")
    assert run.status == "queued"
    assert run.created_at == 42.0 and run.updated_at == 42.0
    assert run.last_seq == 2
    assert (run.parent_run, run.fork_step) == ("p", 3)
    assert run.lease_owner is None and run.lease_expires is None
    assert run.cancel_requested is False
    assert run.finished_at is None and run.reason is None
    assert run.usage == Usage()
    assert await s.get_run("r") == run
    assert await s.get_run("nope") is None
    assert await s.read_events("r") == [
        Event(1, "run.created", {"x": 1}, 42.0, None),
        Event(2, "input", {"text": "hi"}, 42.5, 0),
    ]
    empty, _ = await s.create_run(new_run("e"))
    assert empty.last_seq == 0
    assert await s.read_events("e") == []


async def check_create_run_idempotent(h: Harness) -> None:
    """A repeated idempotency key in the same namespace returns the existing run untouched."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    first, created = await s.create_run(
        new_run("r1", idempotency_key="k", session_id="s"), [ev(n=1)]
    )
    assert created and first.idempotency_key == "k"

    again, created = await s.create_run(
        new_run("r2", 200.0, idempotency_key="k", session_id="s"), [ev(n=2), ev(n=3)]
    )
    assert not created
    assert again == first
    assert await s.get_run("r2") is None
    assert [e.data for e in await s.read_events("r1")] == [{"n": 1}]
    session = await s.get_session("s")
    assert session is not None and session.next_turn == 1, "a replay takes no turn"

    other_ns, created = await s.create_run(new_run("r3", idempotency_key="k", namespace="team"))
    assert created and other_ns.id == "r3"

    _, created_a = await s.create_run(new_run("n1"))
    _, created_b = await s.create_run(new_run("n2"))
    assert created_a and created_b, "runs without a key never collide"


async def check_create_run_idempotent_concurrent(h: Harness) -> None:
    """Concurrent creates with one key create exactly one run."""
    s = h.store
    results = await asyncio.gather(
        *(s.create_run(new_run(f"r{i}", idempotency_key="same")) for i in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert len({run.id for run, _ in results}) == 1
    assert len(await s.list_runs()) == 1


async def check_create_run_duplicate_id(h: Harness) -> None:
    """Interpretation: creating a run whose id exists raises ConflictError, writes nothing."""
    s = h.store
    await s.create_run(new_run("r"), [ev(n=1)])
    with pytest.raises(ConflictError):
        await s.create_run(new_run("r", 300.0, agent="other"), [ev(n=2)])
    run = await s.get_run("r")
    assert run is not None and run.agent == "helper" and run.last_seq == 1


async def check_list_runs(h: Harness) -> None:
    """list_runs filters by namespace, session and statuses, newest first, with a limit."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    await s.create_run(new_run("old", 10.0))
    await s.create_run(new_run("mid", 20.0, namespace="team"))
    await s.create_run(new_run("new", 30.0))
    # The later turn is the newer run here, so the two orders differ.
    await s.create_run(new_run("t0", 40.0, session_id="s"))
    await s.create_run(new_run("t1", 50.0, session_id="s"))
    await finish(s, "old", 60.0)

    assert [r.id for r in await s.list_runs()] == ["t1", "t0", "new", "mid", "old"]
    assert [r.id for r in await s.list_runs(limit=2)] == ["t1", "t0"]
    assert [r.id for r in await s.list_runs(namespace="team")] == ["mid"]
    assert [r.id for r in await s.list_runs(namespace="default", limit=3)] == ["t1", "t0", "new"]
    assert [r.id for r in await s.list_runs(statuses=["succeeded"])] == ["old"]
    assert [r.id for r in await s.list_runs(statuses=["queued", "succeeded"], limit=10)] == [
        "t1",
        "t0",
        "new",
        "mid",
        "old",
    ]
    assert await s.list_runs(statuses=[]) == []
    assert [r.id for r in await s.list_runs(session_id="s")] == ["t0", "t1"]
    assert [r.id for r in await s.list_runs(session_id="s", limit=1)] == ["t0"]
    assert await s.list_runs(session_id="s", statuses=["succeeded"]) == []
    assert await s.list_runs(namespace="nobody") == []


async def check_list_runs_of_a_parent(h: Harness) -> None:
    """list_runs(parent=...) gives a run's children and forks only, newest first, and
    combines with the other filters."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    await s.create_run(new_run("p", 10.0))
    await s.create_run(new_run("other", 11.0))
    await s.create_run(new_run("c1", 20.0, parent_run="p"))
    await s.create_run(new_run("c2", 30.0, parent_run="p", namespace="team"))
    await s.create_run(new_run("fork", 40.0, parent_run="p", fork_step=3, session_id="s"))
    await s.create_run(new_run("grandchild", 50.0, parent_run="c1"))
    await s.create_run(new_run("c_other", 60.0, parent_run="other"))
    await finish(s, "c1", 70.0)

    assert [r.id for r in await s.list_runs(parent="p")] == ["fork", "c2", "c1"]
    assert [r.id for r in await s.list_runs(parent="c1")] == ["grandchild"]
    assert await s.list_runs(parent="grandchild") == []
    assert await s.list_runs(parent="nobody") == []
    assert [r.id for r in await s.list_runs(parent="p", limit=1)] == ["fork"]
    assert [r.id for r in await s.list_runs(parent="p", namespace="team")] == ["c2"]
    assert [r.id for r in await s.list_runs(parent="p", statuses=["succeeded"])] == ["c1"]
    assert [r.id for r in await s.list_runs(parent="p", session_id="s")] == ["fork"]
    forks = [r for r in await s.list_runs(parent="p") if r.fork_step is not None]
    assert [(r.id, r.parent_run, r.fork_step) for r in forks] == [("fork", "p", 3)]


async def check_run_principal(h: Harness) -> None:
    """A run keeps who started it; a cancel request keeps who asked first; both are
    ``None`` when nobody is named."""
    s = h.store
    run, _ = await s.create_run(new_run("r", principal="key:alice"))
    assert run.principal == "key:alice" and run.cancel_by is None
    assert await s.get_run("r") == run
    anonymous, _ = await s.create_run(new_run("a"))
    assert anonymous.principal is None
    assert (await s.list_runs(namespace="default", limit=1))[0].principal == "key:alice"
    leased, _ = await s.create_run(
        new_run("l", principal="key:bob", lease_owner="W", lease_expires=200.0)
    )
    assert leased.principal == "key:bob" and leased.status == "running"
    assert run.cancel_at is None
    cancelled = await s.request_cancel("r", by="key:carol", now=120.0)
    assert cancelled.cancel_requested and cancelled.cancel_by == "key:carol"
    assert cancelled.cancel_at == 120.0
    again = await s.request_cancel("r", by="key:dave", now=130.0)
    assert (again.cancel_by, again.cancel_at) == ("key:carol", 120.0), "the first one counts"
    unnamed = await s.request_cancel("a")
    assert unnamed.cancel_by is None and unnamed.cancel_at is not None, "the wall clock"
    await s.create_run(new_run("done", principal="key:alice"))
    await finish(s, "done", 150.0)
    done = await s.request_cancel("done", by="key:carol", now=160.0)
    assert done.cancel_by is None and done.cancel_at is None and not done.cancel_requested
    stored = await s.get_run("r")
    assert stored is not None and stored.cancel_by == "key:carol"
    assert stored.principal == "key:alice"


async def check_list_runs_filters(h: Harness) -> None:
    """list_runs filters by target, principal and creation time too, in any
    combination with the others; a session's runs come newest first when asked."""
    s = h.store
    await s.create_session(SessionRecord(id="s", namespace="default", created_at=1.0))
    for run_id, at, kw in (
        ("a1", 10.0, {"agent": "a", "principal": "key:x"}),
        ("b1", 20.0, {"agent": "b", "principal": "key:y"}),
        ("a2", 30.0, {"agent": "a", "principal": "key:y", "session_id": "s"}),
        ("a3", 40.0, {"agent": "a", "session_id": "s"}),
        ("t1", 50.0, {"agent": "a", "principal": "key:x", "namespace": "team"}),
    ):
        await s.create_run(new_run(run_id, at, **kw))
    await finish(s, "a1", 60.0)

    async def ids(**kw: Any) -> list[str]:
        return [r.id for r in await s.list_runs(**kw)]

    assert await ids(agent="a") == ["t1", "a3", "a2", "a1"]
    assert await ids(agent="a", namespace="default") == ["a3", "a2", "a1"]
    assert await ids(principal="key:y") == ["a2", "b1"]
    assert await ids(principal="key:x", namespace="default") == ["a1"]
    assert await ids(principal="key:x", statuses=["succeeded"]) == ["a1"]
    assert await ids(principal="key:nobody") == []
    assert await ids(created_after=20.0) == ["t1", "a3", "a2", "b1"]
    assert await ids(created_before=30.0) == ["b1", "a1"], "the bound is exclusive"
    assert await ids(created_after=20.0, created_before=40.0) == ["a2", "b1"]
    assert await ids(created_after=20.0, created_before=20.0) == []
    assert await ids(agent="a", principal="key:y", session_id="s") == ["a2"]
    assert await ids(session_id="s") == ["a2", "a3"]
    assert await ids(session_id="s", order="newest") == ["a3", "a2"]
    assert await ids(session_id="s", order="turn", created_after=35.0) == ["a3"]
    assert await ids(agent="b", statuses=["succeeded"]) == []
    with pytest.raises(UsageError):
        await s.list_runs(order="turn")
    with pytest.raises(UsageError):
        await s.list_runs(session_id="s", before=(40.0, "a3"))


async def check_list_runs_pages(h: Harness) -> None:
    """Paged with a cursor (the last run's ``(created_at, id)``), newest first, every
    run comes exactly once, runs created at the same time included; runs created
    while paging never shift a page."""
    s = h.store
    made = []
    for i in range(23):
        run_id = f"r{i:02d}"
        # Ties on created_at: the id decides, so the order is total.
        run, _ = await s.create_run(new_run(run_id, 100.0 + i // 3, principal="key:p"))
        made.append(run)
    await s.create_run(new_run("zz", 100.0, namespace="team"))
    expected = [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await s.list_runs(namespace="default", before=cursor, limit=4)
        seen += [r.id for r in page]
        if len(page) < 4:
            break
        cursor = (page[-1].created_at, page[-1].id)
        # Created while paging, newer than every run listed: never on a later page.
        await s.create_run(new_run(f"new{len(seen)}", 500.0 + len(seen)))
    assert seen == expected
    first = await s.list_runs(namespace="default", limit=4)
    assert [r.id for r in first][:1] == ["new20"]
    filtered = await s.list_runs(
        namespace="default", principal="key:p", before=(104.0, "r13"), limit=3
    )
    assert [r.id for r in filtered] == ["r12", "r11", "r10"]
    assert await s.list_runs(before=(100.0, "r00")) == []
    assert [r.id for r in await s.list_runs(before=(100.0, "r01"))] == ["r00"]
    oldest = await s.list_runs(before=(100.5, ""))
    assert [r.id for r in oldest] == ["zz", "r02", "r01", "r00"]


# --- events --------------------------------------------------------------------


async def check_append_and_read(h: Harness) -> None:
    """Appends continue the sequence; read_events returns seq > after_seq in order."""
    s = h.store
    await s.create_run(new_run("r"), [ev("a", 1.0)])
    data = {"nested": {"list": [1, 2.5, None, True], "s": "ünïcode ✓"}, "empty": {}}
    assert await s.append_events("r", [ev("b", 2.0, step=0), ev("c", 3.0)], expected_seq=1) == 3
    assert await s.append_events("r", [EventDraft("d", data, 4.25, step=7)], expected_seq=3) == 4
    events = await s.read_events("r")
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.type for e in events] == ["a", "b", "c", "d"]
    assert events[1].step == 0 and events[2].step is None
    assert events[3] == Event(4, "d", data, 4.25, 7)
    assert [e.seq for e in await s.read_events("r", after_seq=2)] == [3, 4]
    assert await s.read_events("r", after_seq=4) == []
    assert await s.read_events("r", after_seq=99) == []
    run = await s.get_run("r")
    assert run is not None and run.last_seq == 4
    assert await s.append_events("r", [], expected_seq=4) == 4, "an empty append is a no-op"


async def check_append_updates_timestamps(h: Harness) -> None:
    """Interpretation: updated_at becomes the ts of the last appended event."""
    s = h.store
    await s.create_run(new_run("r", 10.0))
    await s.append_events("r", [ev(ts=11.0), ev(ts=12.5)], expected_seq=0)
    run = await s.get_run("r")
    assert run is not None and run.updated_at == 12.5


async def check_append_wrong_seq(h: Harness) -> None:
    """A stale or future expected_seq raises LeaseLost and changes nothing."""
    s = h.store
    await s.create_run(new_run("r"), [ev(), ev()])
    for wrong in (0, 1, 3, 10):
        with pytest.raises(LeaseLost):
            await s.append_events(
                "r",
                [ev(n=wrong)],
                expected_seq=wrong,
                update=RunUpdate(status="failed", usage=Usage(input_tokens=5)),
            )
    run = await s.get_run("r")
    assert run is not None
    assert run.last_seq == 2 and run.status == "queued" and run.usage == Usage()
    assert len(await s.read_events("r")) == 2


async def check_append_owner(h: Harness) -> None:
    """With ``owner`` given, an append fails when someone else holds the lease."""
    s = h.store
    await s.create_run(new_run("r"))
    assert await s.acquire_lease("r", "A", 30.0, now=100.0) is not None
    assert await s.append_events("r", [ev()], expected_seq=0, owner="A") == 1
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=1, owner="B")
    assert await s.append_events("r", [ev()], expected_seq=1) == 2, "no owner: no lease check"

    assert await s.acquire_lease("r", "B", 30.0, now=101.0, replacing="A") is not None
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=2, owner="A")
    assert await s.append_events("r", [ev()], expected_seq=2, owner="B") == 3
    run = await s.get_run("r")
    assert run is not None and run.last_seq == 3


async def check_append_owner_free_lease(h: Harness) -> None:
    """With ``owner`` given, the lease must be that owner's: one nobody holds (released,
    or never taken) is refused too, so a writer that gave its lease up cannot write."""
    s = h.store
    await s.create_run(new_run("r"))
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=0, owner="A")
    await s.acquire_lease("r", "A", 30.0, now=100.0)
    assert await s.append_events("r", [ev()], expected_seq=0, owner="A") == 1
    await s.release_lease("r", "A")
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=1, owner="A")
    assert len(await s.read_events("r")) == 1


async def check_unknown_run(h: Harness) -> None:
    """Appending to (or reading, or cancelling) an unknown run raises NotFoundError."""
    s = h.store
    with pytest.raises(NotFoundError):
        await s.append_events("nope", [ev()], expected_seq=0)
    with pytest.raises(NotFoundError):
        await s.read_events("nope")
    with pytest.raises(NotFoundError):
        await s.request_cancel("nope")


async def check_append_update_status_and_usage(h: Harness) -> None:
    """RunUpdate sets status and reason; usage adds up; terminal status sets finished_at."""
    s = h.store
    await s.create_run(new_run("r", 10.0))
    seq = await s.append_events(
        "r",
        [ev(ts=11.0)],
        expected_seq=0,
        update=RunUpdate(status="running", usage=Usage(100, 20, 0.5, 1, 0)),
    )
    run = await s.get_run("r")
    assert run is not None
    assert run.status == "running" and run.finished_at is None
    assert run.usage == Usage(100, 20, 0.5, 1, 0)

    seq = await s.append_events(
        "r",
        [ev(ts=12.0)],
        expected_seq=seq,
        update=RunUpdate(usage=Usage(input_tokens=50, cost_usd=0.25, tool_calls=2)),
    )
    seq = await s.append_events(
        "r", [ev(ts=13.0)], expected_seq=seq, update=RunUpdate(status="waiting", reason="ask")
    )
    run = await s.get_run("r")
    assert run is not None
    assert run.status == "waiting" and run.reason == "ask"
    assert run.usage == Usage(150, 20, 0.75, 1, 2)
    assert run.usage.total_tokens == 170
    assert run.finished_at is None

    seq = await s.append_events(
        "r", [], expected_seq=seq, update=RunUpdate(usage=Usage(output_tokens=5))
    )
    assert seq == 3, "an update without events keeps the seq"
    seq = await s.append_events(
        "r",
        [ev("x", 14.0), ev("run.failed", 15.0)],
        expected_seq=seq,
        update=RunUpdate(status="failed", reason="boom", usage=Usage(model_calls=1)),
    )
    run = await s.get_run("r")
    assert run is not None
    assert run.status == "failed" and run.reason == "boom" and run.finished
    assert run.finished_at == 15.0, "finished_at is the ts of the terminal append's last event"
    assert run.usage == Usage(150, 25, 0.75, 2, 2)
    assert run.last_seq == 5


async def check_status_change_replaces_reason(h: Harness) -> None:
    """With a status, the reason is replaced (a run going on after waiting no longer says
    why it waited); without one, a missing reason keeps the stored one."""
    s = h.store
    await s.create_run(new_run("r"))
    seq = await s.append_events(
        "r", [ev()], expected_seq=0, update=RunUpdate(status="waiting", reason="decide")
    )
    seq = await s.append_events("r", [ev()], expected_seq=seq, update=RunUpdate(usage=Usage(1)))
    run = await s.get_run("r")
    assert run is not None and run.reason == "decide"
    seq = await s.append_events("r", [ev()], expected_seq=seq, update=RunUpdate(reason="why"))
    run = await s.get_run("r")
    assert run is not None and run.status == "waiting" and run.reason == "why"
    seq = await s.append_events("r", [ev()], expected_seq=seq, update=RunUpdate(status="running"))
    run = await s.get_run("r")
    assert run is not None and run.status == "running" and run.reason is None
    await s.append_events("r", [ev()], expected_seq=seq, update=RunUpdate(status="succeeded"))
    run = await s.get_run("r")
    assert run is not None and run.status == "succeeded" and run.reason is None


async def check_terminal_statuses_finish(h: Harness) -> None:
    """Every terminal status sets finished_at."""
    s = h.store
    for i, status in enumerate(sorted(TERMINAL_STATUSES)):
        await s.create_run(new_run(f"r{i}"))
        await finish(s, f"r{i}", 50.0 + i, status)
        run = await s.get_run(f"r{i}")
        assert run is not None
        assert run.status == status and run.finished_at == 50.0 + i


async def check_create_run_leased(h: Harness) -> None:
    """A run can be created already leased, and is then running."""
    s = h.store
    run, created = await s.create_run(
        NewRun("r1", "default", "bot", 10.0, lease_owner="w1", lease_expires=40.0)
    )
    assert created and run.status == "running" and run.lease_owner == "w1"
    stored = await s.get_run("r1")
    assert stored is not None and stored == run
    assert await s.acquire_lease("r1", "w2", 30.0, now=20.0) is None
    assert await s.claim_runs("w2", 30.0, now=20.0) == []
    taken = await s.acquire_lease("r1", "w2", 30.0, now=41.0)
    assert taken is not None and taken.lease_owner == "w2"


async def check_terminal_status_releases_lease(h: Harness) -> None:
    """Ending a run releases its lease in the same append."""
    s = h.store
    await s.create_run(new_run("r1"))
    leased = await s.acquire_lease("r1", "w1", 30.0, now=10.0)
    assert leased is not None and leased.lease_owner == "w1"
    await s.append_events(
        "r1",
        [ev("end", 11.0)],
        expected_seq=leased.last_seq,
        owner="w1",
        update=RunUpdate(status="succeeded"),
    )
    run = await s.get_run("r1")
    assert run is not None and run.lease_owner is None and run.lease_expires is None


async def check_large_payloads_and_dedup(h: Harness) -> None:
    """Large payloads round-trip exactly and are stored once however often they recur."""
    s = h.store
    assert await h.count_blobs() == 0
    await s.create_run(new_run("r1"), [EventDraft("big", big_payload("a"), 1.0)])
    assert await h.count_blobs() == 1
    await s.append_events(
        "r1",
        [EventDraft("big", big_payload("a"), 2.0, step=1), ev("small", 3.0, x="y" * 10)],
        expected_seq=1,
    )
    await s.create_run(new_run("r2"), [EventDraft("big", big_payload("a"), 4.0)])
    assert await h.count_blobs() == 1, "one blob for three events in two runs"
    await s.append_events("r2", [EventDraft("big", big_payload("b"), 5.0)], expected_seq=1)
    assert await h.count_blobs() == 2

    events = await s.read_events("r1")
    assert [e.data for e in events] == [big_payload("a"), big_payload("a"), {"x": "y" * 10}]
    assert events[1].step == 1 and events[1].ts == 2.0
    assert [e.data["tag"] for e in await s.read_events("r2")] == ["a", "b"]
    assert [e.seq for e in await s.read_events("r1", after_seq=1)] == [2, 3]


async def check_failed_op_does_not_abort_others(h: Harness) -> None:
    """Concurrent appends: the ones with a wrong seq fail, all the others land."""
    s = h.store
    for i in range(10):
        await s.create_run(new_run(f"r{i}"), [ev()])
    results = await asyncio.gather(
        *(
            s.append_events(
                f"r{i}",
                [ev(n=i), EventDraft("big", big_payload(f"p{i}"), 1.0)],
                expected_seq=1 if i % 2 else 7,
                update=RunUpdate(usage=Usage(input_tokens=1)),
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    for i, result in enumerate(results):
        run = await s.get_run(f"r{i}")
        assert run is not None
        if i % 2:
            assert result == 3
            assert run.last_seq == 3 and run.usage.input_tokens == 1
            assert (await s.read_events(f"r{i}"))[2].data == big_payload(f"p{i}")
        else:
            assert isinstance(result, LeaseLost)
            assert run.last_seq == 1 and run.usage.input_tokens == 0
    assert await h.count_blobs() == 5


async def check_concurrent_appends_same_run(h: Harness) -> None:
    """Two writers racing on one run with the same expected_seq: exactly one wins."""
    s = h.store
    await s.create_run(new_run("r"))
    for seq in range(0, 20, 2):
        results = await asyncio.gather(
            s.append_events("r", [ev(w="a"), ev(w="a")], expected_seq=seq),
            s.append_events("r", [ev(w="b"), ev(w="b")], expected_seq=seq),
            return_exceptions=True,
        )
        assert sorted(map(type, results), key=lambda t: t.__name__) == [LeaseLost, int]
    events = await s.read_events("r")
    assert [e.seq for e in events] == list(range(1, 21))
    for i in range(0, 20, 2):
        assert events[i].data == events[i + 1].data, "a batch is never split"


async def check_concurrent_appends_many_runs(h: Harness) -> None:
    """50 tasks appending to 50 runs concurrently: every event lands, in order."""
    s = h.store
    n_runs, n_appends = 50, 20
    for i in range(n_runs):
        await s.create_run(new_run(f"r{i}", float(i)))

    async def writer(i: int) -> None:
        seq = 0
        for n in range(n_appends):
            seq = await s.append_events(
                f"r{i}",
                [ev("model", float(n), step=n, i=i, n=n), ev("tool", float(n), step=n, i=i)],
                expected_seq=seq,
                update=RunUpdate(usage=Usage(input_tokens=1, tool_calls=1)),
            )

    await asyncio.gather(*(writer(i) for i in range(n_runs)))
    for i in range(n_runs):
        run = await s.get_run(f"r{i}")
        assert run is not None
        assert run.last_seq == 2 * n_appends
        assert run.usage == Usage(input_tokens=n_appends, tool_calls=n_appends)
        events = await s.read_events(f"r{i}")
        assert [e.seq for e in events] == list(range(1, 2 * n_appends + 1))
        assert all(e.data["i"] == i for e in events)
        assert [e.data["n"] for e in events[::2]] == list(range(n_appends))


# --- leases --------------------------------------------------------------------


async def check_lease_acquire(h: Harness) -> None:
    """A queued run becomes running when leased; another live owner is refused."""
    s = h.store
    await s.create_run(new_run("r"))
    run = await s.acquire_lease("r", "A", 30.0, now=100.0)
    assert run is not None
    assert run.status == "running" and run.lease_owner == "A" and run.lease_expires == 130.0
    assert await s.get_run("r") == run

    assert await s.acquire_lease("r", "B", 30.0, now=110.0) is None
    held = await s.get_run("r")
    assert held is not None and held.lease_owner == "A"

    again = await s.acquire_lease("r", "A", 30.0, now=120.0)
    assert again is not None and again.lease_owner == "A" and again.lease_expires == 150.0

    taken = await s.acquire_lease("r", "B", 10.0, now=121.0, replacing="A")
    assert taken is not None and taken.lease_owner == "B" and taken.lease_expires == 131.0
    assert await s.acquire_lease("nope", "A", 30.0, now=100.0) is None


async def check_lease_takeover_is_conditional(h: Harness) -> None:
    """``replacing`` takes a live lease only from that holder: a takeover decided on a
    stale read (the dead holder was replaced meanwhile) never steals from the new one."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "dead", 30.0, now=100.0)
    first = await s.acquire_lease("r", "B", 30.0, now=101.0, replacing="dead")
    assert first is not None and first.lease_owner == "B"
    # C read the run before B took it, and also judged "dead" dead.
    assert await s.acquire_lease("r", "C", 30.0, now=102.0, replacing="dead") is None
    run = await s.get_run("r")
    assert run is not None and run.lease_owner == "B" and run.lease_expires == 131.0
    assert await s.acquire_lease("r", "C", 30.0, now=102.0, replacing="someone") is None
    # A free or expired lease needs no replacing, and a wrong one does not stop it.
    await s.release_lease("r", "B")
    free = await s.acquire_lease("r", "C", 30.0, now=103.0, replacing="dead")
    assert free is not None and free.lease_owner == "C"
    expired = await s.acquire_lease("r", "D", 30.0, now=134.0, replacing="nobody")
    assert expired is not None and expired.lease_owner == "D"


async def check_lease_takeover_race(h: Harness) -> None:
    """Many workers, in one store and across two, take over one dead holder's lease at
    once: exactly one wins, and only the winner can append."""
    peer = await h.open_peer()
    try:
        for round_ in range(5):
            run_id = f"r{round_}"
            await h.store.create_run(new_run(run_id))
            await h.store.acquire_lease(run_id, "dead", 30.0, now=100.0)
            owners = [f"w{i}" for i in range(8)]
            stores = [h.store if i % 2 else peer for i in range(8)]
            taken = await asyncio.gather(
                *(
                    st.acquire_lease(run_id, o, 30.0, now=101.0, replacing="dead")
                    for st, o in zip(stores, owners, strict=True)
                )
            )
            winners = [o for o, t in zip(owners, taken, strict=True) if t is not None]
            assert len(winners) == 1, winners
            appended = await asyncio.gather(
                *(
                    st.append_events(run_id, [ev(o=o)], expected_seq=0, owner=o)
                    for st, o in zip(stores, owners, strict=True)
                ),
                return_exceptions=True,
            )
            ok = [o for o, r in zip(owners, appended, strict=True) if r == 1]
            assert ok == winners
            assert all(isinstance(r, LeaseLost) for r in appended if r != 1)
    finally:
        await peer.close()


async def check_lease_expiry(h: Harness) -> None:
    """An expired lease can be taken by anyone; a live one cannot."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 10.0, now=100.0)
    assert await s.acquire_lease("r", "B", 10.0, now=109.0) is None
    taken = await s.acquire_lease("r", "B", 10.0, now=111.0)
    assert taken is not None and taken.lease_owner == "B" and taken.lease_expires == 121.0
    assert await s.renew_lease("r", "A", 10.0, now=112.0) is False


async def check_renew_leases(h: Harness) -> None:
    """renew_leases extends, in one call, exactly the leases the owner holds."""
    s = h.store
    for name in ("a", "b", "c", "d"):
        await s.create_run(new_run(name))
    await s.acquire_lease("a", "A", 10.0, now=100.0)
    await s.acquire_lease("b", "A", 10.0, now=100.0)
    await s.acquire_lease("c", "B", 10.0, now=100.0)
    # "a" expired unrenewed but nobody took it: still A's to renew.
    held = await s.renew_leases(["a", "b", "c", "d", "nope"], "A", 30.0, now=111.0)
    assert held == {"a", "b"}
    for name, owner, expires in (("a", "A", 141.0), ("b", "A", 141.0), ("c", "B", 110.0)):
        run = await s.get_run(name)
        assert run is not None and (run.lease_owner, run.lease_expires) == (owner, expires)
    run = await s.get_run("d")
    assert run is not None and run.lease_owner is None and run.lease_expires is None
    assert await s.renew_leases([], "A", 30.0, now=112.0) == set()
    await s.append_events("b", [ev()], expected_seq=0, update=RunUpdate(status="succeeded"))
    assert await s.renew_leases(["a", "b"], "A", 30.0, now=113.0) == {"a"}


async def check_holder_writes_extend_the_lease(h: Harness) -> None:
    """A write of the lease's holder extends the lease by the length it was granted
    (a renewal that waits behind that write must not cost the holder its run); a
    write of nobody in particular, or one that ends the run, does not."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 10.0, now=100.0)
    await s.append_events("r", [ev(ts=105.0)], expected_seq=0, owner="A")
    assert (await _lease(s, "r")) == ("A", 115.0)
    # Never shortened: a write stamped earlier than the lease's last extension.
    await s.append_events("r", [ev(ts=101.0)], expected_seq=1, owner="A")
    assert (await _lease(s, "r")) == ("A", 115.0)
    await s.append_events("r", [ev(ts=112.0)], expected_seq=2, owner="A", update=RunUpdate())
    assert (await _lease(s, "r")) == ("A", 122.0)
    await s.append_events("r", [ev(ts=120.0)], expected_seq=3)
    assert (await _lease(s, "r")) == ("A", 122.0), "unfenced: not the holder's proof of life"
    # The length is the latest grant's: a renewal for 30 s makes writes extend by 30.
    assert await s.renew_leases(["r"], "A", 30.0, now=121.0) == {"r"}
    await s.append_events("r", [ev(ts=125.0)], expected_seq=4, owner="A")
    assert (await _lease(s, "r")) == ("A", 155.0)
    await s.create_run(new_run("c", lease_owner="B", lease_expires=105.0))
    await s.append_events("c", [ev(ts=104.0)], expected_seq=0, owner="B")
    assert (await _lease(s, "c")) == ("B", 109.0), "created leased: its length is kept too"
    await s.append_events(
        "r", [ev(ts=130.0)], expected_seq=5, owner="A", update=RunUpdate(status="succeeded")
    )
    assert (await _lease(s, "r")) == (None, None)
    [claimed] = await s.claim_runs("C", 20.0, now=200.0, limit=5)
    assert claimed.id == "c"
    await s.append_events("c", [ev(ts=210.0)], expected_seq=1, owner="C")
    assert (await _lease(s, "c")) == ("C", 230.0)


async def _lease(s: Store, run_id: str) -> tuple[str | None, float | None]:
    run = await s.get_run(run_id)
    assert run is not None
    return run.lease_owner, run.lease_expires


async def check_lease_waiting_run(h: Harness) -> None:
    """A waiting run can be leased and stays waiting."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.append_events("r", [ev()], expected_seq=0, update=RunUpdate(status="waiting"))
    run = await s.acquire_lease("r", "A", 10.0, now=100.0)
    assert run is not None and run.status == "waiting" and run.lease_owner == "A"


async def check_lease_renew_release(h: Harness) -> None:
    """renew extends only the holder's lease; release is a no-op for others."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 10.0, now=100.0)
    assert await s.renew_lease("r", "A", 20.0, now=105.0) is True
    run = await s.get_run("r")
    assert run is not None and run.lease_expires == 125.0
    assert await s.renew_lease("r", "B", 20.0, now=105.0) is False
    assert await s.renew_lease("nope", "A", 20.0, now=105.0) is False

    await s.release_lease("r", "B")
    run = await s.get_run("r")
    assert run is not None and run.lease_owner == "A"

    await s.release_lease("r", "A")
    run = await s.get_run("r")
    assert run is not None
    assert run.lease_owner is None and run.lease_expires is None
    assert run.status == "running", "releasing does not change the status"
    assert await s.renew_lease("r", "A", 20.0, now=106.0) is False
    await s.release_lease("r", "A")  # releasing twice is harmless
    await s.release_lease("nope", "A")

    again = await s.acquire_lease("r", "B", 10.0, now=107.0)
    assert again is not None and again.lease_owner == "B"


async def check_lease_terminal_runs(h: Harness) -> None:
    """Finished runs cannot be leased, not even replacing their last holder, nor claimed."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 10.0, now=100.0)
    await finish(s, "r", 101.0)
    assert await s.acquire_lease("r", "A", 10.0, now=102.0) is None
    assert await s.acquire_lease("r", "B", 10.0, now=200.0, replacing="A") is None
    await s.create_run(new_run("done", status="cancelled"))
    assert await s.acquire_lease("done", "A", 10.0, now=102.0) is None
    assert await s.claim_runs("C", 10.0, now=500.0) == []


async def check_claim_runs(h: Harness) -> None:
    """claim_runs leases queued and unleased/expired running runs, oldest first."""
    s = h.store
    for i in range(6):
        await s.create_run(new_run(f"r{i}", 10.0 + i))
    await finish(s, "r0", 50.0)  # finished: never claimed
    await s.acquire_lease("r1", "X", 100.0, now=90.0)  # live lease until 190
    await s.append_events("r2", [], expected_seq=0, update=RunUpdate(status="waiting"))
    await s.acquire_lease("r3", "Y", 5.0, now=90.0)  # expires at 95
    await s.acquire_lease("r4", "Z", 5.0, now=90.0)
    await s.release_lease("r4", "Z")  # running, no lease: interrupted

    claimed = await s.claim_runs("W", 30.0, now=100.0, limit=2)
    assert [r.id for r in claimed] == ["r3", "r4"]
    for r in claimed:
        assert r.status == "running" and r.lease_owner == "W" and r.lease_expires == 130.0
    claimed = await s.claim_runs("W", 30.0, now=100.0, limit=10)
    assert [r.id for r in claimed] == ["r5"]
    assert await s.claim_runs("V", 30.0, now=100.0) == []

    stored = await s.get_run("r5")
    assert stored is not None and stored.lease_owner == "W" and stored.status == "running"
    later = await s.claim_runs("V", 30.0, now=200.0, limit=10)
    assert [r.id for r in later] == ["r1", "r3", "r4", "r5"], "expired leases are claimable"


async def check_claim_runs_concurrent(h: Harness) -> None:
    """Concurrent claimers, in one store and across two, never claim the same run."""
    n = 60
    for i in range(n):
        await h.store.create_run(new_run(f"r{i:02d}", float(i)))
    peer = await h.open_peer()
    try:

        async def claimer(store: Store, owner: str) -> list[str]:
            got: list[str] = []
            while True:
                claimed = await store.claim_runs(owner, 60.0, now=1000.0, limit=3)
                if not claimed:
                    return got
                assert all(r.lease_owner == owner for r in claimed)
                got.extend(r.id for r in claimed)

        results = await asyncio.gather(
            claimer(h.store, "A"),
            claimer(h.store, "B"),
            claimer(peer, "C"),
            claimer(peer, "D"),
        )
    finally:
        await peer.close()
    claimed = [run_id for got in results for run_id in got]
    assert len(claimed) == len(set(claimed)) == n
    for owner, got in zip("ABCD", results, strict=True):
        for run_id in got:
            run = await h.store.get_run(run_id)
            assert run is not None and run.lease_owner == owner


# --- cancellation --------------------------------------------------------------


async def check_request_cancel(h: Harness) -> None:
    """request_cancel flags the run and returns it; status is left to the worker."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 10.0, now=100.0)
    run = await s.request_cancel("r")
    assert run.id == "r" and run.cancel_requested is True
    assert run.status == "running" and run.lease_owner == "A"
    stored = await s.get_run("r")
    assert stored is not None and stored.cancel_requested is True
    again = await s.request_cancel("r")
    assert again.cancel_requested is True

    await s.create_run(new_run("q"))
    queued = await s.request_cancel("q")
    assert queued.cancel_requested is True and queued.status == "queued"

    await s.create_run(new_run("done"))
    await finish(s, "done", 150.0)
    done = await s.request_cancel("done")
    assert done.cancel_requested is False and done.status == "succeeded"


async def check_cancel_refuses_other_writes(h: Harness) -> None:
    """Once a cancel is requested the run takes no write but its cancelled end: no new
    step, no waiting, no other end. A refused append writes nothing."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 30.0, now=100.0)
    seq = await s.append_events("r", [ev()], expected_seq=0, owner="A")
    await s.request_cancel("r")
    refused: list[RunUpdate | None] = [
        None,
        RunUpdate(usage=Usage(tool_calls=1)),
        RunUpdate(status="running"),
        RunUpdate(status="waiting", reason="ask"),
        RunUpdate(status="succeeded"),
        RunUpdate(status="failed", reason="boom"),
    ]
    for update in refused:
        with pytest.raises(CancelRequested):
            await s.append_events(
                "r", [ev("tool.call", step=2)], expected_seq=seq, owner="A", update=update
            )
    run = await s.get_run("r")
    assert run is not None and run.last_seq == seq and run.status == "running"
    assert run.usage == Usage() and len(await s.read_events("r")) == 1
    # A stale or foreign writer still gets LeaseLost, as before.
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=0, owner="A")
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev()], expected_seq=seq, owner="B")
    end = RunUpdate(status="cancelled", reason="cancelled on request")
    assert await s.append_events("r", [ev("x"), ev("end")], expected_seq=seq, update=end) == 3
    run = await s.get_run("r")
    assert run is not None and run.status == "cancelled" and run.finished


async def check_cancel_races_the_end(h: Harness) -> None:
    """A cancel request and a succeeded end racing: either the run ended first (and the
    request acknowledges nothing) or the request did (and the end is refused)."""
    peer = await h.open_peer()
    try:
        for i in range(20):
            run_id = f"r{i}"
            await h.store.create_run(new_run(run_id))
            await h.store.acquire_lease(run_id, "A", 30.0, now=100.0)
            done = RunUpdate(status="succeeded")
            cancel, end = await asyncio.gather(
                peer.request_cancel(run_id),
                h.store.append_events(run_id, [ev()], expected_seq=0, owner="A", update=done),
                return_exceptions=True,
            )
            run = await h.store.get_run(run_id)
            assert run is not None
            if isinstance(end, CancelRequested):
                assert not isinstance(cancel, BaseException) and cancel.cancel_requested
                assert run.status == "running" and run.last_seq == 0
            else:
                assert end == 1 and run.status == "succeeded"
                assert not isinstance(cancel, BaseException)
                assert cancel.cancel_requested is False, "a finished run acknowledges no cancel"
    finally:
        await peer.close()


async def check_cancel_requests(h: Harness) -> None:
    """cancel_requests names the given unfinished runs whose cancel was requested."""
    s = h.store
    for run_id in ("a", "b", "c", "d"):
        await s.create_run(new_run(run_id))
    await s.request_cancel("b")
    await s.request_cancel("d")
    await s.append_events("d", [ev()], expected_seq=0, update=RunUpdate(status="cancelled"))
    assert await s.cancel_requests(["a", "b", "c", "d", "nope"]) == {"b"}
    assert await s.cancel_requests([]) == set()
    many = [f"m{i}" for i in range(1200)]  # more ids than one query may bind
    for run_id in many[::100]:
        await s.create_run(new_run(run_id))
        await s.request_cancel(run_id)
    assert await s.cancel_requests([*many, "b"]) == {*many[::100], "b"}


# --- gc ------------------------------------------------------------------------


async def check_gc(h: Harness) -> None:
    """gc deletes old finished runs, their events, empty sessions and orphan blobs only."""
    s = h.store
    cutoff = 1000.0
    for sid, created in (("s_gone", 1.0), ("s_kept", 1.0), ("s_empty", 2.0), ("s_new", 2000.0)):
        await s.create_session(SessionRecord(id=sid, namespace="default", created_at=created))

    # Deleted: old finished runs.
    await s.create_run(new_run("old1", 10.0), [EventDraft("big", big_payload("only-old"), 10.0)])
    await finish(s, "old1", 500.0)
    await s.create_run(
        new_run("old2", 11.0, session_id="s_gone"),
        [EventDraft("big", big_payload("shared"), 11.0), ev()],
    )
    await finish(s, "old2", 600.0, "failed")
    await s.create_run(new_run("old3", 12.0, session_id="s_kept"), [ev()])
    await finish(s, "old3", 700.0, "cancelled")
    # Kept: finished after the cutoff, still active, or never finished.
    await s.create_run(new_run("recent", 13.0), [EventDraft("big", big_payload("shared"), 13.0)])
    await finish(s, "recent", 1500.0)
    await s.create_run(new_run("active", 14.0, session_id="s_kept"), [ev()])
    await s.acquire_lease("active", "A", 10.0, now=20.0)
    await s.create_run(new_run("waiting", 15.0), [EventDraft("big", big_payload("w"), 15.0)])
    await s.append_events("waiting", [], expected_seq=1, update=RunUpdate(status="waiting"))
    await s.create_run(new_run("queued", 16.0))
    assert await h.count_blobs() == 3

    result = await s.gc(finished_before=cutoff)
    assert sorted(result.run_ids) == ["old1", "old2", "old3"]
    assert result == GcResult(run_ids=result.run_ids, events=7, blobs=1, sessions=2)
    assert result.runs == 3

    for gone in ("old1", "old2", "old3"):
        assert await s.get_run(gone) is None
        with pytest.raises(NotFoundError):
            await s.read_events(gone)
    assert {r.id for r in await s.list_runs()} == {"recent", "active", "waiting", "queued"}
    assert await s.get_session("s_gone") is None, "its only run was deleted"
    assert await s.get_session("s_empty") is None, "an old session with no runs goes too"
    assert await s.get_session("s_kept") is not None, "it still has a run"
    assert await s.get_session("s_new") is not None, "a session newer than the cutoff stays"
    assert await h.count_blobs() == 2
    recent = await s.read_events("recent")
    assert recent[0].data == big_payload("shared"), "a blob another run uses survives"
    assert (await s.read_events("waiting"))[0].data == big_payload("w")

    assert await s.gc(finished_before=cutoff) == GcResult(run_ids=(), events=0, blobs=0, sessions=0)

    # The store keeps working after gc, including reusing a deleted payload.
    await s.create_run(new_run("after", 20.0), [EventDraft("big", big_payload("only-old"), 1.0)])
    assert (await s.read_events("after"))[0].data == big_payload("only-old")
    assert await h.count_blobs() == 3
    await finish(s, "after", 1600.0)
    result = await s.gc(finished_before=10_000.0)
    # recent + after, 2 events each; the shared blob goes with its last run; s_new is
    # now older than the cutoff and empty.
    assert sorted(result.run_ids) == ["after", "recent"]
    assert (result.events, result.blobs, result.sessions) == (4, 2, 1)
    assert await h.count_blobs() == 1
    assert {r.id for r in await s.list_runs()} == {"active", "waiting", "queued"}
    assert await s.get_session("s_kept") is not None


# --- blobs --------------------------------------------------------------------------


async def check_blobs_are_content_addressed_and_found_by_step(h: Harness) -> None:
    """put_blob stores bytes once under their SHA-256; find_blob gives what a run refers
    to as a name at its latest step up to a given one."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.create_run(new_run("other"))
    one, two = b"files after step 2" * 100, b"files after step 5" * 100
    first = await s.put_blob(one, run_id="r", name="scratch", step=2)
    assert first == RunBlob("r", "scratch", 2, hashlib.sha256(one).hexdigest(), len(one))
    await s.put_blob(two, run_id="r", name="scratch", step=5)
    assert await s.get_blob(first.digest) == one
    assert await s.get_blob(hashlib.sha256(b"never stored").hexdigest()) is None
    assert await s.get_blob("not hex") is None

    latest = await s.find_blob("r", "scratch")
    assert latest is not None and (latest.step, await s.get_blob(latest.digest)) == (5, two)
    assert await s.find_blob("r", "scratch", at_step=4) == first
    assert await s.find_blob("r", "scratch", at_step=1) is None, "nothing yet at step 1"
    assert await s.find_blob("r", "other-name") is None
    assert await s.find_blob("other", "scratch") is None
    assert await s.find_blob("nobody", "scratch") is None

    before = await h.count_blobs()
    shared = await s.put_blob(one, run_id="other", name="scratch", step=9)
    assert shared.digest == first.digest
    assert await h.count_blobs() == before, "equal bytes are stored once"
    # A second put for the same name and step replaces the reference.
    await s.put_blob(two, run_id="other", name="scratch", step=9)
    again = await s.find_blob("other", "scratch")
    assert again is not None and again.digest == latest.digest


async def check_put_blob_is_fenced_like_an_append(h: Harness) -> None:
    """With ``owner`` a put needs the run's lease; an unknown run is an error."""
    s = h.store
    await s.create_run(new_run("r"))
    await s.acquire_lease("r", "A", 30.0, now=10.0)
    await s.put_blob(b"a", run_id="r", name="scratch", step=1, owner="A")
    with pytest.raises(LeaseLost):
        await s.put_blob(b"b", run_id="r", name="scratch", step=1, owner="B")
    found = await s.find_blob("r", "scratch")
    assert found is not None and await s.get_blob(found.digest) == b"a", "nothing written"
    with pytest.raises(NotFoundError):
        await s.put_blob(b"c", run_id="nobody", name="scratch", step=1)


async def check_gc_deletes_blobs_no_run_refers_to(h: Harness) -> None:
    """gc drops a removed run's references, then the blobs nobody refers to any more."""
    s = h.store
    await s.create_run(new_run("old"))
    await s.create_run(new_run("live"))
    only_old = await s.put_blob(b"only the old run's" * 50, run_id="old", name="scratch", step=1)
    shared = await s.put_blob(b"both runs'" * 50, run_id="old", name="scratch", step=2)
    await s.put_blob(b"both runs'" * 50, run_id="live", name="scratch", step=4)
    await finish(s, "old", 50.0)
    before = await h.count_blobs()
    result = await s.gc(finished_before=100.0)
    assert result.run_ids == ("old",) and result.blobs == 1
    assert await h.count_blobs() == before - 1
    assert await s.get_blob(only_old.digest) is None
    assert await s.get_blob(shared.digest) == b"both runs'" * 50, "the live run still refers"
    assert await s.find_blob("old", "scratch") is None


# --- fencing tokens -----------------------------------------------------------------


async def check_lease_token_grows_with_every_new_owner(h: Harness) -> None:
    """Every grant of a lease to an owner that does not hold it live increments the
    run's fencing token (acquire, takeover, expiry, claim, a leased create), even for
    the same owner id again; acquiring again or renewing a live lease keeps it."""
    s = h.store
    run, _ = await s.create_run(new_run("r"))
    assert run.lease_token == 0, "never leased"
    granted = [await s.acquire_lease("r", "A", 30.0, now=100.0)]
    granted.append(await s.acquire_lease("r", "A", 30.0, now=110.0))  # A holds it live
    assert await s.renew_lease("r", "A", 30.0, now=120.0)
    granted.append(await s.acquire_lease("r", "B", 30.0, now=121.0, replacing="A"))
    granted.append(await s.acquire_lease("r", "C", 30.0, now=200.0))  # B's expired at 151
    await s.release_lease("r", "C")
    released = await s.get_run("r")
    assert released is not None and released.lease_owner is None
    assert released.lease_token == 3, "releasing keeps the token"
    granted.append(await s.acquire_lease("r", "C", 30.0, now=201.0))
    granted.append(await s.acquire_lease("r", "C", 30.0, now=300.0))  # its own, expired
    tokens = [(g.lease_owner, g.lease_token) for g in granted if g is not None]
    assert tokens == [("A", 1), ("A", 1), ("B", 2), ("C", 3), ("C", 4), ("C", 5)]
    claimed = await s.claim_runs("D", 30.0, now=400.0)
    assert [(r.id, r.lease_owner, r.lease_token) for r in claimed] == [("r", "D", 6)]
    stored = await s.get_run("r")
    assert stored is not None and stored.lease_token == 6
    leased, _ = await s.create_run(new_run("l", lease_owner="W", lease_expires=500.0))
    assert leased.lease_token == 1 and await s.get_run("l") == leased
    await s.create_run(new_run("q"))
    assert [(r.id, r.lease_token) for r in await s.claim_runs("E", 30.0, now=401.0)] == [("q", 1)]


async def check_fenced_writes_refuse_a_stale_token(h: Harness) -> None:
    """A writer paused past its lease, whose owner id was granted the run again since,
    writes nothing with its old token: no append, no blob, no renewal, no release. The
    current grant writes; without a token the owner check alone applies."""
    s = h.store
    await s.create_run(new_run("r"))
    first = await s.acquire_lease("r", "A", 10.0, now=100.0)
    assert first is not None
    old = first.lease_token
    assert await s.append_events("r", [ev()], expected_seq=0, owner="A", token=old) == 1
    # A stalls; B takes the run over and gives it up; A's id is granted it again.
    assert await s.acquire_lease("r", "B", 10.0, now=111.0) is not None
    assert await s.append_events("r", [ev()], expected_seq=1, owner="B") == 2
    await s.release_lease("r", "B")
    second = await s.acquire_lease("r", "A", 10.0, now=112.0)
    assert second is not None and second.lease_token == old + 2
    new = second.lease_token
    with pytest.raises(LeaseLost):
        await s.append_events("r", [ev(stale=True)], expected_seq=2, owner="A", token=old)
    with pytest.raises(LeaseLost):
        await s.put_blob(b"stale", run_id="r", name="scratch", step=2, owner="A", token=old)
    assert await s.renew_lease("r", "A", 10.0, now=113.0, token=old) is False
    await s.release_lease("r", "A", token=old)  # not its grant: a no-op
    run = await s.get_run("r")
    assert run is not None and run.last_seq == 2
    assert (run.lease_owner, run.lease_expires, run.lease_token) == ("A", 122.0, new)
    assert await s.find_blob("r", "scratch") is None, "nothing written"
    assert await s.renew_lease("r", "A", 10.0, now=113.0, token=new) is True
    assert await s.append_events("r", [ev()], expected_seq=2, owner="A", token=new) == 3
    blob = await s.put_blob(b"fresh", run_id="r", name="scratch", step=3, owner="A", token=new)
    assert await s.find_blob("r", "scratch") == blob
    assert await s.append_events("r", [ev()], expected_seq=3, owner="A") == 4, "no token"
    with pytest.raises(UsageError):
        await s.append_events("r", [ev()], expected_seq=4, token=new)
    with pytest.raises(UsageError):
        await s.put_blob(b"x", run_id="r", name="scratch", step=4, token=new)
    await s.release_lease("r", "A", token=new)
    run = await s.get_run("r")
    assert run is not None and run.lease_owner is None and run.last_seq == 4


async def check_lease_token_takeover_race(h: Harness) -> None:
    """Many workers, in one store and across two, race for an expired lease: one wins
    the next token, and only it can write under that token."""
    peer = await h.open_peer()
    try:
        await h.store.create_run(new_run("r"))
        first = await h.store.acquire_lease("r", "stalled", 10.0, now=100.0)
        assert first is not None
        owners = [f"w{i}" for i in range(8)]
        stores = [h.store if i % 2 else peer for i in range(8)]
        taken = await asyncio.gather(
            *(
                st.acquire_lease("r", o, 10.0, now=200.0)
                for st, o in zip(stores, owners, strict=True)
            )
        )
        won = [t for t in taken if t is not None]
        assert len(won) == 1 and won[0].lease_token == first.lease_token + 1
        token = won[0].lease_token
        appended = await asyncio.gather(
            *(
                st.append_events("r", [ev(o=o)], expected_seq=0, owner=o, token=token)
                for st, o in [*zip(stores, owners, strict=True), (peer, "stalled")]
            ),
            return_exceptions=True,
        )
        assert sorted(type(a).__name__ for a in appended) == ["LeaseLost"] * 8 + ["int"]
        assert [e.data["o"] for e in await h.store.read_events("r")] == [won[0].lease_owner]
    finally:
        await peer.close()


# --- watch --------------------------------------------------------------------------


async def _wakes(watch: RunWatch, run_id: str, write: Awaitable[Any]) -> set[str]:
    """What a watch waiting on ``run_id`` returns when ``write`` happens meanwhile."""
    waiter = asyncio.create_task(watch.changed({run_id}, timeout=10.0))
    await asyncio.sleep(0.02)
    assert not waiter.done(), "the watch waits while nothing is written"
    await write
    return await asyncio.wait_for(waiter, 5.0)


async def check_watch_wakes_on_every_write_to_a_run(h: Harness) -> None:
    """A waiting watch wakes on each kind of write to a run it waits on, and returns
    that run; renewing a lease is not a write it reports."""
    s = h.store
    await s.create_run(new_run("r"))
    async with s.watch() as w:
        assert isinstance(w, RunWatch)
        assert await w.changed({"r"}, timeout=0.05) == set(), "nothing written yet"
        assert await _wakes(w, "r", s.append_events("r", [ev()], expected_seq=0)) == {"r"}
        assert await _wakes(w, "r", s.acquire_lease("r", "A", 30.0, now=10.0)) == {"r"}
        assert await w.changed({"r"}, timeout=0.2) == set()
        renewed = asyncio.create_task(w.changed({"r"}, timeout=0.3))
        assert await s.renew_lease("r", "A", 30.0, now=11.0)
        assert await renewed == set(), "a renewal changes nothing a waiter acts on"
        assert await _wakes(w, "r", s.release_lease("r", "A")) == {"r"}
        assert await _wakes(w, "r", s.claim_runs("B", 30.0, now=12.0)) == {"r"}
        assert await _wakes(w, "r", s.request_cancel("r")) == {"r"}
        end = s.append_events(
            "r", [ev("run.cancelled")], expected_seq=1, update=RunUpdate(status="cancelled")
        )
        assert await _wakes(w, "r", end) == {"r"}
        assert await _wakes(w, "new", s.create_run(new_run("new"))) == {"new"}
        await finish(s, "new", 50.0)
        assert await w.changed({"new"}, timeout=0) == {"new"}
        assert await _wakes(w, "new", s.gc(finished_before=100.0)) == {"new"}


async def check_watch_reports_writes_since_the_last_call(h: Harness) -> None:
    """Writes between two calls are reported by the next (for the first call: since
    the watch opened); writes to runs not asked about are not; a failed write is none."""
    s = h.store
    for run_id in ("a", "b", "c"):
        await s.create_run(new_run(run_id))
    async with s.watch() as w:
        await s.append_events("a", [ev()], expected_seq=0)
        await s.append_events("b", [ev()], expected_seq=0)
        assert await w.changed({"a", "c"}, timeout=0) == {"a"}
        assert await w.changed({"a", "b", "c"}, timeout=0) == set(), "each call starts anew"
        with pytest.raises(LeaseLost):
            await s.append_events("c", [ev()], expected_seq=7)
        assert await w.changed({"c"}, timeout=0.1) == set(), "nothing was written"
        waiter = asyncio.create_task(w.changed({"a", "b"}, timeout=5.0))
        await asyncio.sleep(0.02)
        await s.append_events("c", [ev()], expected_seq=0)  # not asked about
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await s.append_events("b", [ev()], expected_seq=1)
        assert await waiter == {"b"}
    # Two watches hear the same write.
    async with s.watch() as w1, s.watch() as w2:
        await s.append_events("a", [ev()], expected_seq=1)
        assert await w1.changed({"a"}, timeout=0) == {"a"}
        assert await w2.changed({"a"}, timeout=0) == {"a"}


async def check_watch_hears_another_stores_writes(h: Harness) -> None:
    """A write through another store on the same database (another worker) wakes a
    watch; it may report the other runs it waits on too, never fewer."""
    s = h.store
    await s.create_run(new_run("r"))
    peer = await h.open_peer()
    try:
        async with s.watch() as w:
            assert await w.changed({"r"}, timeout=0.05) == set()
            woke = await _wakes(w, "r", peer.append_events("r", [ev()], expected_seq=0))
            assert woke == {"r"}
            assert "r" in await _wakes(w, "r", peer.request_cancel("r"))
    finally:
        await peer.close()


async def check_watch_tells_the_queue_of_claimable_runs(h: Harness) -> None:
    """The pseudo-run QUEUE is written when a run may have become claimable (created
    without a lease, its lease given up, set running without an owner), by this store
    and by another; not by a run created leased."""
    s = h.store
    peer = await h.open_peer()
    try:
        async with s.watch() as w:
            assert await w.changed({QUEUE}, timeout=0.05) == set()
            assert await _wakes(w, QUEUE, s.create_run(new_run("q"))) == {QUEUE}
            leased = new_run("l", lease_owner="A", lease_expires=500.0)
            await s.create_run(leased)
            assert await w.changed({QUEUE}, timeout=0.2) == set(), "leased: not queue work"
            assert QUEUE in await _wakes(w, QUEUE, peer.release_lease("l", "A"))
            await s.acquire_lease("q", "B", 30.0, now=10.0)
            await s.append_events("q", [], expected_seq=0, update=RunUpdate(status="waiting"))
            await s.release_lease("q", "B")
            assert await w.changed({QUEUE}, timeout=0) == {QUEUE}
            going = s.append_events("q", [ev()], expected_seq=0, update=RunUpdate(status="running"))
            assert await _wakes(w, QUEUE, going) == {QUEUE}
    finally:
        await peer.close()


# --- tool-call counts (quotas) ------------------------------------------------------


def call_ev(toolset: str | None, ts: float, **data: Any) -> EventDraft:
    """A ``tool.call`` intent of Tool resource ``toolset`` (none: no ``toolset`` key)."""
    payload: dict[str, Any] = {"id": "c", "name": "t", "args": "{}", **data}
    if toolset is not None:
        payload["toolset"] = toolset
    return EventDraft("tool.call", payload, ts, step=1)


async def check_count_tool_calls(h: Harness) -> None:
    """Appended ``tool.call`` events count per namespace, Tool, session and time."""
    s = h.store
    for sid, ns in (("s1", "default"), ("s2", "default"), ("t1", "other")):
        await s.create_session(SessionRecord(id=sid, namespace=ns, created_at=1.0))
    await s.create_run(new_run("r1", session_id="s1"))
    await s.create_run(new_run("r2", session_id="s2"))
    await s.create_run(new_run("r3"))
    await s.create_run(new_run("r4", namespace="other", session_id="t1"))

    assert await s.count_tool_calls(namespace="default", tool="search") == 0
    # One transaction with other events around the calls.
    await s.append_events(
        "r1",
        [ev(ts=9.0), call_ev("search", 10.0), call_ev("search", 20.0), ev("tool.result", 21.0)],
        expected_seq=0,
    )
    await s.append_events("r1", [call_ev("fetch", 30.0)], expected_seq=4)
    await s.append_events("r2", [call_ev("search", 30.0)], expected_seq=0)
    # Large payloads (stored as blobs) count the same.
    big = EventDraft("tool.call", {**big_payload("call"), "toolset": "search"}, 40.0, step=2)
    await s.append_events("r3", [big, call_ev("search", 50.0)], expected_seq=0)
    await s.append_events("r4", [call_ev("search", 50.0)], expected_seq=0)
    # Not calls of a Tool resource: no toolset key, or not a tool.call event.
    await s.append_events(
        "r3",
        [call_ev(None, 60.0), EventDraft("tool.result", {"toolset": "search"}, 60.0, step=1)],
        expected_seq=2,
    )

    async def count(**kw: Any) -> int:
        kw.setdefault("namespace", "default")
        kw.setdefault("tool", "search")
        return await s.count_tool_calls(**kw)

    assert await count() == 5
    assert await count(tool="fetch") == 1
    assert await count(tool="nothing") == 0
    assert await count(namespace="other") == 1, "tenants are counted apart"
    assert await count(namespace="nobody") == 0
    assert await count(session_id="s1") == 2
    assert await count(session_id="s2") == 1
    assert await count(session_id="t1") == 0, "t1 belongs to another namespace"
    assert await count(namespace="other", session_id="t1") == 1
    assert await count(since=30.0) == 3, "since is inclusive"
    assert await count(since=30.5) == 2
    assert await count(session_id="s1", since=15.0) == 1
    assert await count(since=1000.0) == 0


async def check_count_tool_calls_atomic_with_append(h: Harness) -> None:
    """A rejected append counts nothing; an accepted one counts at once."""
    s = h.store
    await s.create_run(new_run("r1"))
    await s.append_events("r1", [call_ev("search", 10.0)], expected_seq=0)
    with pytest.raises(LeaseLost):
        await s.append_events("r1", [call_ev("search", 11.0)], expected_seq=0)
    await s.acquire_lease("r1", "A", 30.0, now=10.0)
    with pytest.raises(LeaseLost):
        await s.append_events("r1", [call_ev("search", 12.0)], expected_seq=1, owner="B")
    with pytest.raises(NotFoundError):
        await s.append_events("nope", [call_ev("search", 13.0)], expected_seq=0)
    assert await s.count_tool_calls(namespace="default", tool="search") == 1
    # Submitted together (a backend may commit them in one batch): one of the two
    # appends at seq 1 wins, and only its call counts.
    outcomes = await asyncio.gather(
        s.append_events("r1", [call_ev("search", 14.0)], expected_seq=1, owner="A"),
        s.append_events("r1", [call_ev("search", 15.0)], expected_seq=1, owner="A"),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["LeaseLost", "int"]
    assert await s.count_tool_calls(namespace="default", tool="search") == 2


async def check_count_tool_calls_not_create_run(h: Harness) -> None:
    """Interpretation: events given to ``create_run`` copy calls made by another run
    (a fork's shared steps, an imported log) and are not counted again."""
    s = h.store
    await s.create_session(SessionRecord(id="s1", namespace="default", created_at=1.0))
    await s.create_run(new_run("parent", session_id="s1"))
    await s.append_events("parent", [call_ev("search", 10.0)], expected_seq=0)
    copied = await s.read_events("parent")
    await s.create_run(
        new_run("fork", session_id="s1", parent_run="parent", fork_step=1),
        [EventDraft(e.type, e.data, e.ts, e.step) for e in copied],
    )
    assert await s.count_tool_calls(namespace="default", tool="search") == 1
    assert await s.count_tool_calls(namespace="default", tool="search", session_id="s1") == 1
    # The fork's own calls count.
    await s.append_events("fork", [call_ev("search", 20.0)], expected_seq=1)
    assert await s.count_tool_calls(namespace="default", tool="search", session_id="s1") == 2


async def check_count_tool_calls_gc(h: Harness) -> None:
    """gc forgets the calls of the runs it deletes, and only those."""
    s = h.store
    await s.create_session(SessionRecord(id="s1", namespace="default", created_at=1.0))
    await s.create_run(new_run("old", session_id="s1"))
    await s.append_events("old", [call_ev("search", 10.0), call_ev("search", 11.0)], expected_seq=0)
    await finish(s, "old", 500.0)
    await s.create_run(new_run("new", session_id="s1"))
    await s.append_events("new", [call_ev("search", 600.0)], expected_seq=0)
    assert await s.count_tool_calls(namespace="default", tool="search", session_id="s1") == 3

    result = await s.gc(finished_before=1000.0)
    assert result.runs == 1
    assert await s.count_tool_calls(namespace="default", tool="search") == 1
    assert await s.count_tool_calls(namespace="default", tool="search", session_id="s1") == 1
    # The store keeps counting after gc.
    await s.append_events("new", [call_ev("search", 700.0)], expected_seq=1)
    assert await s.count_tool_calls(namespace="default", tool="search", since=650.0) == 1


CHECKS: list[Callable[[Harness], Awaitable[None]]] = [
    check_implements_protocol,
    check_close_is_idempotent,
    check_resource_generations,
    check_resource_get_list_delete,
    check_sessions_create_get,
    check_session_turns,
    check_session_turns_concurrent,
    check_create_run_unknown_session,
    check_forked_session_turns,
    check_create_run_record,
    check_create_run_idempotent,
    check_create_run_idempotent_concurrent,
    check_create_run_duplicate_id,
    check_list_runs,
    check_list_runs_of_a_parent,
    check_run_principal,
    check_list_runs_filters,
    check_list_runs_pages,
    *RUN_LIST_CHECKS,
    check_append_and_read,
    check_append_updates_timestamps,
    check_append_wrong_seq,
    check_append_owner,
    check_append_owner_free_lease,
    check_unknown_run,
    check_append_update_status_and_usage,
    check_status_change_replaces_reason,
    check_terminal_statuses_finish,
    check_terminal_status_releases_lease,
    check_create_run_leased,
    check_large_payloads_and_dedup,
    check_failed_op_does_not_abort_others,
    check_concurrent_appends_same_run,
    check_concurrent_appends_many_runs,
    check_lease_acquire,
    check_lease_takeover_is_conditional,
    check_lease_takeover_race,
    check_lease_expiry,
    check_lease_waiting_run,
    check_lease_renew_release,
    check_renew_leases,
    check_holder_writes_extend_the_lease,
    check_lease_terminal_runs,
    check_claim_runs,
    check_claim_runs_concurrent,
    check_request_cancel,
    check_cancel_refuses_other_writes,
    check_cancel_races_the_end,
    check_cancel_requests,
    check_gc,
    check_blobs_are_content_addressed_and_found_by_step,
    check_put_blob_is_fenced_like_an_append,
    check_gc_deletes_blobs_no_run_refers_to,
    check_lease_token_grows_with_every_new_owner,
    check_fenced_writes_refuse_a_stale_token,
    check_lease_token_takeover_race,
    check_watch_wakes_on_every_write_to_a_run,
    check_watch_reports_writes_since_the_last_call,
    check_watch_hears_another_stores_writes,
    check_watch_tells_the_queue_of_claimable_runs,
    check_count_tool_calls,
    check_count_tool_calls_atomic_with_append,
    check_count_tool_calls_not_create_run,
    check_count_tool_calls_gc,
    *SESSION_CHECKS,
    *LEDGER_CHECKS,
    *RATE_LIMIT_CHECKS,
    *QUEUE_CHECKS,
    *CIRCUIT_CHECKS,
    *AUDIT_CHECKS,
]
"""Every check, in a stable order."""
