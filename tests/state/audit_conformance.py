"""The audit part of the store conformance suite (listed in ``conformance.CHECKS``): each
tenant's hash chain appended on its own, with events, with resource changes, once per
``ref``, listed by every filter, and kept unbroken by concurrent appenders on two
stores of one database."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from agentrt.errors import LeaseLost
from agentrt.observe.audit import GENESIS, AuditRecord, record_hash
from agentrt.observe.audit_verify import verify_chain
from agentrt.state.audit import AuditDraft
from agentrt.state.base import EventDraft, NewRun, RunUpdate, Store

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["AUDIT_CHECKS"]


def _run(run_id: str, *, namespace: str = "default", agent: str = "bot", **kw: Any) -> NewRun:
    return NewRun(id=run_id, namespace=namespace, agent=agent, created_at=100.0, **kw)


def _audited(
    type_: str, ts: float, kind: str, who: str | None = "key:ann", **body: Any
) -> EventDraft:
    return EventDraft(type_, dict(body), ts, audit=AuditDraft(kind, who, body))


async def _chain(store: Store, namespace: str) -> list[AuditRecord]:
    return await store.list_audit(namespace, limit=10_000)


async def _intact(store: Store, namespace: str) -> list[AuditRecord]:
    """The tenant's whole chain, checked to verify."""
    records = await _chain(store, namespace)
    verdict = verify_chain(namespace, records, await store.audit_head(namespace))
    assert verdict.ok, verdict.message()
    return records


async def check_audit_append_chains(h: Harness) -> None:
    """Appends number a tenant's records 1, 2, 3, ... each linked to the one before and
    hashed over its fields; each tenant has its own chain and head."""
    s = h.store
    assert await s.audit_head("a") is None
    assert await s.list_audit("a") == []
    first = await s.append_audit(
        "a",
        [AuditDraft("resource.applied", "key:ann", {"n": 1}), AuditDraft("policy.refused")],
        now=10.0,
    )
    more = await s.append_audit(
        "a", [AuditDraft("tool.call", "bob", {"n": 3}, "r1", "bot")], now=11
    )
    other = await s.append_audit("b", [AuditDraft("tool.call", "cy")], now=12.0)
    assert [r.seq for r in first + more] == [1, 2, 3] and other[0].seq == 1
    assert first[0].prev_hash == GENESIS == other[0].prev_hash
    assert first[1].prev_hash == first[0].hash and more[0].prev_hash == first[1].hash
    assert all(record_hash(r) == r.hash for r in first + more + other)
    stored = await _intact(s, "a")
    assert stored == first + more
    r3 = stored[2]
    assert (r3.ts, r3.kind, r3.principal, r3.run_id, r3.agent, r3.body) == (
        11.0, "tool.call", "bob", "r1", "bot", {"n": 3},
    )  # fmt: skip
    head = await s.audit_head("a")
    assert head is not None and (head.seq, head.hash) == (3, r3.hash)
    assert await s.audit_namespaces() == ["a", "b"]
    assert await s.append_audit("a", [], now=13.0) == []
    assert await s.audit_namespaces() == ["a", "b"]


async def check_audit_ref_appends_once(h: Harness) -> None:
    """A draft whose ref the tenant recorded returns the stored record and takes no
    number, in a later append or in the same one; another tenant's ref is its own."""
    s = h.store
    (one,) = await s.append_audit("a", [AuditDraft("tool.call", "ann", {"x": 1}, ref="k1")], now=1)
    again = await s.append_audit(
        "a",
        [
            AuditDraft("tool.call", "ann", {"x": 2}, ref="k1"),
            AuditDraft("tool.call", "ann", {"x": 3}, ref="k2"),
            AuditDraft("tool.call", "ann", {"x": 4}, ref="k2"),
        ],
        now=2.0,
    )
    assert again[0] == one and again[1] == again[2] and again[1].seq == 2
    (elsewhere,) = await s.append_audit("b", [AuditDraft("tool.call", ref="k1")], now=3.0)
    assert elsewhere.seq == 1
    assert [r.body for r in await _intact(s, "a")] == [{"x": 1}, {"x": 3}]


async def check_audit_with_events(h: Harness) -> None:
    """A record attached to an event is written with it, naming the run, its agent, the
    event's seq and time; an append that is refused, or a run created again by its
    key, writes none."""
    s = h.store
    created = _audited("run.created", 100.0, "run.submitted", input="hi")
    await s.create_run(_run("r1", idempotency_key="k"), [created])
    _, fresh = await s.create_run(_run("r2", idempotency_key="k"), [created])
    assert not fresh
    events = [
        EventDraft("model.call", {}, 101.0, 1),
        _audited("tool.call", 102.0, "tool.call", step=2),
        _audited("tool.call", 103.0, "tool.call", step=3),
    ]
    assert await s.append_events("r1", events, expected_seq=1) == 4
    with pytest.raises(LeaseLost):
        await s.append_events("r1", [_audited("tool.call", 104.0, "tool.call")], expected_seq=1)
    records = await _intact(s, "default")
    assert [(r.kind, r.run_id, r.agent, r.event_seq, r.ts) for r in records] == [
        ("run.submitted", "r1", "bot", 1, 100.0),
        ("tool.call", "r1", "bot", 3, 102.0),
        ("tool.call", "r1", "bot", 4, 103.0),
    ]
    assert records[1].principal == "key:ann" and records[1].body == {"step": 2}


async def check_audit_survives_its_run(h: Harness) -> None:
    """gc deleting a finished run keeps its records: the log is never shortened."""
    s = h.store
    await s.create_run(_run("r1"), [_audited("run.created", 100.0, "run.submitted")])
    update = RunUpdate(status="succeeded")
    await s.append_events(
        "r1", [EventDraft("run.finished", {}, 101.0)], expected_seq=1, update=update
    )
    assert (await s.gc(finished_before=1e12)).run_ids == ("r1",)
    assert [r.run_id for r in await _intact(s, "default")] == ["r1"]


async def check_audit_resource_changes(h: Harness) -> None:
    """A put that created or changed a resource appends its record with the generation,
    an unchanged one none; a delete that removed one appends its record, else none."""
    s = h.store
    body = {"kind": "Agent", "spec": {"model": "m"}}

    def audit(kind: str) -> AuditDraft:
        return AuditDraft(kind, "key:ops", {"kind": "Agent", "name": "a"}, agent="a")

    await s.put_resource("Agent", "t", "a", body, now=10.0, audit=audit("resource.applied"))
    await s.put_resource("Agent", "t", "a", body, now=11.0, audit=audit("resource.applied"))
    changed = {**body, "spec": {"model": "n"}}
    await s.put_resource("Agent", "t", "a", changed, now=12.0, audit=audit("resource.applied"))
    await s.put_resource("Agent", "t", "quiet", body, now=12.5)
    assert await s.delete_resource("Agent", "t", "a", audit=audit("resource.deleted"))
    assert not await s.delete_resource("Agent", "t", "a", audit=audit("resource.deleted"))
    records = await _intact(s, "t")
    assert [(r.kind, r.ts, r.body.get("generation"), r.agent) for r in records[:2]] == [
        ("resource.applied", 10.0, 1, "a"),
        ("resource.applied", 12.0, 2, "a"),
    ]
    assert [r.kind for r in records] == ["resource.applied"] * 2 + ["resource.deleted"]
    assert records[2].body == {"kind": "Agent", "name": "a"}


async def check_list_audit_filters(h: Harness) -> None:
    """list_audit keeps the records every filter given matches, in number order or newest
    first, paged by seq; another tenant's never come."""
    s = h.store
    rows = [
        ("ann", "r1", "bot", "run.submitted"), ("ann", "r1", "bot", "tool.call"),
        ("bob", "r2", "bot", "tool.call"), ("bob", "r2", "other", "tool.denied"),
        (None, None, None, "resource.applied"), ("ann", "r3", "other", "tool.call"),
    ]  # fmt: skip
    for i, (who, run, agent, kind) in enumerate(rows):
        await s.append_audit("t", [AuditDraft(kind, who, {"i": i}, run, agent)], now=10.0 + i)
    await s.append_audit("u", [AuditDraft("tool.call", "ann", {}, "r1", "bot")], now=10.0)

    async def seqs(**kw: Any) -> list[int]:
        return [r.seq for r in await s.list_audit("t", **kw)]

    assert await seqs() == [1, 2, 3, 4, 5, 6]
    assert await seqs(principal="ann") == [1, 2, 6]
    assert await seqs(agent="other") == [4, 6]
    assert await seqs(run_id="r2") == [3, 4]
    assert await seqs(kinds=["tool.call", "tool.denied"]) == [2, 3, 4, 6]
    assert await seqs(kinds=[]) == []
    assert await seqs(since=11.0, until=13.0) == [2, 3]
    assert await seqs(principal="ann", kinds=["tool.call"], run_id="r1") == [2]
    assert await seqs(after=2, limit=2) == [3, 4]
    assert await seqs(newest_first=True, limit=2) == [6, 5]
    assert await seqs(newest_first=True, before=5, agent="bot") == [3, 2, 1]
    assert await seqs(principal="nobody") == []


async def check_audit_concurrent_appends_keep_one_chain(h: Harness) -> None:
    """Appenders on two stores of one database, on their own, with events of several runs
    and with resource changes, all at once: the tenant's records are numbered without
    a gap or a repeat and form one unbroken chain."""
    s, peer = h.store, await h.open_peer()
    try:
        n_tasks, n_appends = 8, 10
        submitted = _audited("run.created", 1.0, "run.submitted")
        for i in range(n_tasks):
            await s.create_run(_run(f"r{i}", namespace="t"), [submitted])

        async def alone(store: Store, i: int) -> None:
            for n in range(n_appends):
                await store.append_audit(
                    "t", [AuditDraft("policy.refused", f"p{i}", {"n": n})], now=2
                )

        async def with_events(store: Store, i: int) -> None:
            seq = 1
            for n in range(n_appends):
                event = _audited("tool.call", 3.0, "tool.call", n=n)
                seq = await store.append_events(f"r{i}", [event], expected_seq=seq)

        async def resources(store: Store, i: int) -> None:
            for n in range(n_appends):
                draft = AuditDraft("resource.applied", f"p{i}", {"n": n})
                await store.put_resource("Tool", "t", f"x{i}", {"n": n}, now=4.0, audit=draft)

        await asyncio.gather(
            *(alone(s if i % 2 else peer, i) for i in range(n_tasks)),
            *(with_events(peer if i % 2 else s, i) for i in range(n_tasks)),
            *(resources(s if i % 2 else peer, i) for i in range(n_tasks)),
        )
        records = await _intact(peer, "t")
        assert [r.seq for r in records] == list(range(1, n_tasks * (3 * n_appends + 1) + 1))
        assert len({r.hash for r in records}) == len(records)
        assert sum(r.kind == "tool.call" for r in records) == n_tasks * n_appends
    finally:
        await peer.close()


AUDIT_CHECKS = [
    check_audit_append_chains,
    check_audit_ref_appends_once,
    check_audit_with_events,
    check_audit_survives_its_run,
    check_audit_resource_changes,
    check_list_audit_filters,
    check_audit_concurrent_appends_keep_one_chain,
]
