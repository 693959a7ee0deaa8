"""The sessions part of the store conformance suite (listed in ``conformance.CHECKS``):
sessions listed with what their runs do, a turn created only while its session is
idle, a session deleted with its runs, and the cause a cancellation was asked with."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import pytest

from agentrt.errors import NotFoundError, SessionBusy
from agentrt.state.base import EventDraft, NewRun, RunStatus, RunUpdate, SessionRecord, Store

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["SESSION_CHECKS"]


def _run(
    run_id: str, created_at: float = 100.0, *, namespace: str = "default", **kw: Any
) -> NewRun:
    return NewRun(id=run_id, namespace=namespace, agent="bot", created_at=created_at, **kw)


async def _end(store: Store, run_id: str, status: str = "succeeded") -> None:
    run = await store.get_run(run_id)
    assert run is not None
    await store.append_events(
        run_id,
        [EventDraft("run.finished", {}, 200.0)],
        expected_seq=run.last_seq,
        update=RunUpdate(status=cast(RunStatus, status)),
    )


async def _wait(store: Store, run_id: str) -> None:
    run = await store.get_run(run_id)
    assert run is not None
    await store.append_events(
        run_id,
        [EventDraft("run.waiting", {}, 150.0)],
        expected_seq=run.last_seq,
        update=RunUpdate(status="waiting_approval"),
    )


async def check_list_sessions_with_activity(h: Harness) -> None:
    """list_sessions gives a namespace's sessions newest first, each with its active and
    waiting runs and its latest write; a cursor pages through them."""
    s = h.store
    for i, namespace in enumerate(["a", "a", "b", "a"]):
        await s.create_session(SessionRecord(f"s{i}", namespace, 10.0 + i))
    await s.create_session(SessionRecord("s4", "a", 12.0))  # ties s2's time: the id orders
    await s.create_run(_run("done", 20.0, namespace="a", session_id="s0"))
    await _end(s, "done")
    await s.create_run(_run("busy", 21.0, namespace="a", session_id="s0"))
    await s.create_run(_run("asks", 22.0, namespace="a", session_id="s1"))
    await _wait(s, "asks")
    await s.create_run(_run("other", 23.0, namespace="b", session_id="s2"))

    listed = await s.list_sessions(namespace="a")
    assert [x.session.id for x in listed] == ["s3", "s4", "s1", "s0"]
    by_id = {x.session.id: x for x in listed}
    assert (by_id["s0"].active, by_id["s0"].waiting) == (1, 0)
    assert (by_id["s1"].active, by_id["s1"].waiting) == (0, 1)
    assert (by_id["s3"].active, by_id["s3"].waiting, by_id["s3"].updated_at) == (0, 0, 13.0)
    done, busy = await s.get_run("done"), await s.get_run("busy")
    assert done is not None and busy is not None
    assert by_id["s0"].updated_at == max(done.updated_at, busy.updated_at)
    assert by_id["s0"].session == await s.get_session("s0")

    first = await s.list_sessions(namespace="a", limit=2)
    last = first[-1].session
    rest = await s.list_sessions(namespace="a", before=(last.created_at, last.id), limit=10)
    assert [x.session.id for x in first + rest] == ["s3", "s4", "s1", "s0"]
    assert {x.session.id for x in await s.list_sessions()} == {f"s{i}" for i in range(5)}


async def check_session_principal(h: Harness) -> None:
    """A session keeps who started it: a second create of its id keeps the first
    principal, and list_sessions filters by it (and pages within it)."""
    s = h.store
    await s.create_session(SessionRecord("mine", "a", 1.0, principal="key:ann"))
    again = await s.create_session(SessionRecord("mine", "a", 2.0, principal="key:bob"))
    assert again.principal == "key:ann" and again.created_at == 1.0
    await s.create_session(SessionRecord("theirs", "a", 3.0, principal="key:bob"))
    await s.create_session(SessionRecord("cli", "a", 4.0))
    await s.create_session(SessionRecord("mine2", "a", 5.0, principal="key:ann"))
    await s.create_session(SessionRecord("elsewhere", "b", 6.0, principal="key:ann"))
    ann = await s.list_sessions(namespace="a", principal="key:ann")
    assert [x.session.id for x in ann] == ["mine2", "mine"]
    assert ann[0].session.principal == "key:ann"
    page = await s.list_sessions(namespace="a", principal="key:ann", before=(5.0, "mine2"))
    assert [x.session.id for x in page] == ["mine"]
    assert (await s.get_session("cli")) == SessionRecord("cli", "a", 4.0)
    everyone = await s.list_sessions(namespace="a")
    assert [x.session.id for x in everyone] == ["mine2", "cli", "theirs", "mine"]


async def check_create_run_if_session_idle(h: Harness) -> None:
    """A run created ``if_session_idle`` is refused while a run of its session is
    unfinished (queued, running or waiting), writing nothing; a retry with the key of a
    run created before gets that run back."""
    s = h.store
    await s.create_session(SessionRecord("s", "default", 1.0))
    first, _ = await s.create_run(_run("r0", session_id="s", idempotency_key="k0"))
    for state in ("queued", "running", "waiting"):
        if state == "running":
            await s.acquire_lease("r0", "A", 30.0, now=100.0)
        if state == "waiting":
            await _wait(s, "r0")
        with pytest.raises(SessionBusy) as refused:
            await s.create_run(_run("r1", session_id="s", if_session_idle=True))
        assert refused.value.session_id == "s" and "r0" in str(refused.value)
        assert await s.get_run("r1") is None
        session = await s.get_session("s")
        assert session is not None and session.next_turn == 1, "no turn was taken"
    again, created = await s.create_run(
        _run("r9", session_id="s", idempotency_key="k0", if_session_idle=True)
    )
    assert (again.id, created) == ("r0", False)
    await _end(s, "r0", "cancelled")
    second, created = await s.create_run(_run("r1", session_id="s", if_session_idle=True))
    assert created and second.turn == 1 and first.turn == 0


async def check_create_run_if_session_idle_concurrent(h: Harness) -> None:
    """Of many runs created ``if_session_idle`` at once on an idle session, from two
    stores, exactly one is created; every other is refused."""
    s = h.store
    peer = await h.open_peer()
    try:
        await s.create_session(SessionRecord("s", "default", 1.0))
        results = await asyncio.gather(
            *(
                (s if i % 2 else peer).create_run(
                    _run(f"r{i}", session_id="s", if_session_idle=True)
                )
                for i in range(10)
            ),
            return_exceptions=True,
        )
    finally:
        await peer.close()
    created = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, SessionBusy)]
    assert len(created) == 1 and len(refused) == 9, results
    assert [r.id for r in await s.list_runs(session_id="s")] == [created[0][0].id]
    session = await s.get_session("s")
    assert session is not None and session.next_turn == 1


async def check_delete_session(h: Harness) -> None:
    """delete_session removes the session, its runs and their child runs with their
    events, keeps forks and other sessions, refuses while one of them is unfinished and
    answers ``None`` for an unknown session."""
    s = h.store
    assert await s.delete_session("nope") is None
    await s.create_session(SessionRecord("s", "default", 1.0))
    await s.create_session(SessionRecord("s~f", "default", 2.0, "s", 1))
    await s.create_run(_run("t0", session_id="s"), [EventDraft("run.created", {}, 1.0)])
    # A tool call (counted for quotas) and a payload kept in the blob table.
    big = {"text": "x" * 65536, "id": "c", "name": "t", "args": "{}", "toolset": "search"}
    await s.append_events("t0", [EventDraft("tool.call", big, 2.0, step=1)], expected_seq=1)
    assert await s.count_tool_calls(namespace="default", tool="search") == 1
    assert await h.count_blobs() == 1
    await s.create_run(_run("child", parent_run="t0"))
    await s.create_run(_run("grandchild", parent_run="child"))
    await s.create_run(_run("fork", parent_run="t0", fork_step=1, session_id="s~f"))
    await s.create_run(_run("loose"))
    for run_id in ("t0", "child", "fork", "loose"):
        await _end(s, run_id)
    with pytest.raises(SessionBusy) as refused:
        await s.delete_session("s")
    assert "grandchild" in str(refused.value)
    assert await s.get_run("t0") is not None and await s.get_session("s") is not None
    await _end(s, "grandchild")

    deleted = await s.delete_session("s")
    assert deleted is not None and sorted(deleted) == ["child", "grandchild", "t0"]
    assert await s.get_session("s") is None
    for run_id in deleted:
        assert await s.get_run(run_id) is None
        with pytest.raises(NotFoundError):
            await s.read_events(run_id)
    assert {r.id for r in await s.list_runs()} == {"fork", "loose"}
    assert await s.count_tool_calls(namespace="default", tool="search") == 0
    await s.gc(finished_before=0.0)  # deletes no run: only blobs nothing refers to
    assert await h.count_blobs() == 0, "the deleted events referred to the only blob"
    assert await s.get_session("s~f") is not None
    assert await s.delete_session("s") is None


async def check_delete_session_races_a_new_turn(h: Harness) -> None:
    """A session deleted while another store creates a turn of it: either the turn is
    created first and the delete refused, or the session goes and the turn is refused;
    never a turn of a deleted session."""
    s = h.store
    peer = await h.open_peer()
    try:
        for i in range(5):
            await s.create_session(SessionRecord(f"s{i}", "default", 1.0))
            deleting = s.delete_session(f"s{i}")
            creating = peer.create_run(_run(f"r{i}", session_id=f"s{i}"))
            deleted, created = await asyncio.gather(deleting, creating, return_exceptions=True)
            if isinstance(deleted, SessionBusy):
                assert isinstance(created, tuple) and created[1]
                assert await s.get_session(f"s{i}") is not None
            else:
                assert deleted == () and isinstance(created, NotFoundError), (deleted, created)
                assert await s.get_run(f"r{i}") is None
    finally:
        await peer.close()


async def check_request_cancel_cause(h: Harness) -> None:
    """request_cancel keeps the cause it was asked with; a second request, with another
    cause, changes nothing; a finished run gets no cause."""
    s = h.store
    await s.create_run(_run("r"))
    assert (await s.request_cancel("r", cause="interrupt")).cancel_cause == "interrupt"
    assert (await s.request_cancel("r", cause="rollback")).cancel_cause == "interrupt"
    stored = await s.get_run("r")
    assert stored is not None and stored.cancel_cause == "interrupt"
    await s.create_run(_run("plain"))
    assert (await s.request_cancel("plain")).cancel_cause is None
    await s.create_run(_run("done"))
    await _end(s, "done")
    done = await s.request_cancel("done", cause="rollback")
    assert done.cancel_cause is None and not done.cancel_requested
    listed = {r.id: r.cancel_cause for r in await s.list_runs()}
    assert listed == {"r": "interrupt", "plain": None, "done": None}


SESSION_CHECKS = [
    check_list_sessions_with_activity,
    check_session_principal,
    check_create_run_if_session_idle,
    check_create_run_if_session_idle_concurrent,
    check_delete_session,
    check_delete_session_races_a_new_turn,
    check_request_cancel_cause,
]
"""The sessions checks, in a stable order."""
