"""The scheduler's queue part of the store conformance suite (listed in
``conformance.CHECKS``): each tenant's claimable runs come in its order (aged
priority, then oldest), with what each (tenant, agent) runs now; a claim of picked
runs takes those still claimable, in the order given, and two claimers racing for
the same picks never both get one."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentrt.state import NewRun
from agentrt.state.run_queue import RunCap, aged_priority

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["QUEUE_CHECKS"]


def _run(run_id: str, namespace: str, at: float, priority: int = 0, agent: str = "bot") -> NewRun:
    return NewRun(run_id, namespace, agent, at, priority=priority)


async def check_the_queue_is_each_tenants_in_its_order(h: Harness) -> None:
    """Higher priority first, then oldest; a run that waited long enough rises a
    class per ``aging_s``; only claimable runs; what runs is counted per agent."""
    s = h.store
    await s.create_run(_run("a-old-low", "a", 100.0, priority=0))
    await s.create_run(_run("a-new-high", "a", 150.0, priority=1))
    await s.create_run(_run("a-newer-high", "a", 160.0, priority=1))
    await s.create_run(_run("b-1", "b", 120.0))
    await s.create_run(_run("b-2", "b", 130.0, agent="helper"))
    await s.create_run(_run("b-held", "b", 110.0, agent="helper"))
    await s.acquire_lease("b-held", "w", 100.0, now=170.0)
    view = await s.queue_view(now=170.0, per_tenant=10, aging_s=1000.0)
    assert [r.id for r in view.of("a")] == ["a-new-high", "a-newer-high", "a-old-low"]
    assert [r.id for r in view.of("b")] == ["b-1", "b-2"]
    assert dict(view.running) == {("b", "helper"): 1}
    first = view.of("a")[0]
    assert (first.namespace, first.agent, first.priority, first.created_at) == (
        "a",
        "bot",
        1,
        150.0,
    )
    # 60 s a class: the low run waited 70 s, the high ones 20 and 10: all at class 1,
    # and then the oldest goes first.
    aged = await s.queue_view(now=170.0, per_tenant=2, aging_s=60.0)
    assert [r.id for r in aged.of("a")] == ["a-old-low", "a-new-high"]
    assert aged_priority(0, 100.0, 170.0, 60.0) == 1
    # A lease that ran out makes its run claimable again; it no longer counts as running.
    later = await s.queue_view(now=300.0, per_tenant=10, aging_s=1000.0)
    assert "b-held" in [r.id for r in later.of("b")] and dict(later.running) == {}


async def check_claiming_picks_takes_what_is_still_claimable(h: Harness) -> None:
    s = h.store
    for i in range(4):
        await s.create_run(_run(f"r{i}", "a", 100.0 + i))
    await s.acquire_lease("r1", "other", 60.0, now=200.0)
    claimed = await s.claim_picked(["r2", "r1", "r0", "nope"], "w", 30.0, now=200.0)
    assert [(r.id, r.status, r.lease_owner, r.lease_expires) for r in claimed] == [
        ("r2", "running", "w", 230.0),
        ("r0", "running", "w", 230.0),
    ]
    assert await s.claim_picked([], "w", 30.0, now=200.0) == []
    assert await s.claim_picked(["r0"], "v", 30.0, now=201.0) == []  # live: not claimable
    [again] = await s.claim_picked(["r0"], "v", 30.0, now=231.0)
    assert again.lease_owner == "v" and again.lease_token == claimed[1].lease_token + 1


async def check_claims_of_the_same_picks_never_overlap(h: Harness) -> None:
    s = h.store
    ids = [f"r{i:02d}" for i in range(30)]
    for i, run_id in enumerate(ids):
        await s.create_run(_run(run_id, "a", float(i)))
    peer = await h.open_peer()
    try:
        results = await asyncio.gather(
            s.claim_picked(ids, "A", 60.0, now=100.0),
            s.claim_picked(list(reversed(ids)), "B", 60.0, now=100.0),
            peer.claim_picked(ids, "C", 60.0, now=100.0),
        )
    finally:
        await peer.close()
    got = [run.id for claimed in results for run in claimed]
    assert sorted(got) == ids, "every run claimed once, by one claimer"


async def check_a_claim_keeps_its_caps(h: Harness) -> None:
    """A capped run is claimed only while fewer than its cap run: live leases count,
    an expired one does not, and an earlier claim of the same call counts."""
    s = h.store
    for i in range(3):
        await s.create_run(_run(f"a{i}", "a", 100.0 + i))
    await s.create_run(_run("h0", "a", 103.0, agent="helper"))
    await s.create_run(_run("held", "a", 90.0))
    await s.acquire_lease("held", "other", 60.0, now=200.0)
    agent_cap = (RunCap("a", 2, ("bot",)),)
    caps = {"a0": agent_cap, "a1": agent_cap, "h0": (RunCap("a", 2, ("helper",)),)}
    claimed = await s.claim_picked(["a0", "a1", "h0"], "w", 30.0, now=200.0, caps=caps)
    assert [r.id for r in claimed] == ["a0", "h0"]  # held and a0 fill bot's 2
    # Once held's lease ran out, it no longer counts (a0's does until 230).
    [later] = await s.claim_picked(["a1"], "w", 30.0, now=261.0, caps=caps)
    assert later.id == "a1"
    tenant_cap = {"a2": (RunCap("a", 1),)}  # a1 runs now (a0's and h0's ran out)
    assert await s.claim_picked(["a2"], "w", 30.0, now=262.0, caps=tenant_cap) == []
    [free] = await s.claim_picked(["a2"], "w", 30.0, now=262.0)  # no cap: claimed
    assert free.id == "a2"


async def check_concurrent_capped_claims_never_pass_the_cap(h: Harness) -> None:
    """Claimers racing for different runs under one cap: one wins, on any connection."""
    s = h.store
    ids = [f"r{i:02d}" for i in range(12)]
    for i, run_id in enumerate(ids):
        await s.create_run(_run(run_id, "a", float(i)))
    caps = {run_id: (RunCap("a", 3),) for run_id in ids}
    peer = await h.open_peer()
    try:
        results = await asyncio.gather(
            *(store.claim_picked([run_id], f"w{run_id}", 60.0, now=100.0, caps=caps)
              for store, run_id in zip([s, peer] * 6, ids, strict=True))
        )  # fmt: skip
    finally:
        await peer.close()
    assert sum(len(claimed) for claimed in results) == 3
    assert dict((await s.queue_view(now=101.0, per_tenant=1)).running) == {("a", "bot"): 3}


QUEUE_CHECKS = [
    check_a_claim_keeps_its_caps,
    check_concurrent_capped_claims_never_pass_the_cap,
    check_the_queue_is_each_tenants_in_its_order,
    check_claiming_picks_takes_what_is_still_claimable,
    check_claims_of_the_same_picks_never_overlap,
]
