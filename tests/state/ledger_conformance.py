"""The budget ledger part of the store conformance suite (listed in
``conformance.CHECKS``): a reservation holds its worst case only if it fits every
account it draws on, settles once, and reservations racing from two stores on one
database together never pass a limit."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from agentrt.errors import LeaseLost
from agentrt.state.base import EventDraft, NewRun, RunUpdate
from agentrt.state.budget_ledger import (
    AccountDraft,
    Amount,
    BudgetLimits,
    BudgetRefusal,
    NewReservation,
    Reservation,
)

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["LEDGER_CHECKS"]

DOLLAR = 1_000_000_000


def _account(key: str, namespace: str = "a", **limits: int) -> AccountDraft:
    return AccountDraft(key, namespace, BudgetLimits(**limits))


def _ask(rid: str, amount: Amount, *accounts: AccountDraft, run: str = "r") -> NewReservation:
    return NewReservation(rid, run, amount, tuple(accounts))


async def check_reserve_settle_and_refuse(h: Harness) -> None:
    """A reservation that fits every account is held on each; one that would pass a
    limit of any is refused naming it and by how much, holding nothing anywhere; a
    settle moves the held amount to the actual one once."""
    s = h.store
    month = _account("a/monthly@2026-12", max_cost_nusd=DOLLAR, max_tokens=1000)
    day = _account("a/daily@2026-12-03", max_tool_calls=2)
    first = await s.reserve_budget(
        _ask("r:1", Amount(300, 200, DOLLAR // 2, 1), month, day), now=1.0
    )
    assert isinstance(first, Reservation) and first.accounts == (day.key, month.key)
    refused = await s.reserve_budget(_ask("r:2", Amount(400, 200, 1, 0), day, month), now=2.0)
    assert refused == BudgetRefusal(month.key, "max_tokens", 1000, 500, 600, 500)
    assert (
        refused.over == 100 and refused.may_fit_later
    )  # only what r:1 holds is in the way and "max_tokens=1000 would be passed by 100" in refused.describe()
    by_key = {a.key: a for a in await s.budget_accounts("a")}
    assert by_key[month.key].held == Amount(300, 200, DOLLAR // 2, 1)
    assert by_key[day.key].held == Amount(300, 200, DOLLAR // 2, 1)
    assert await s.get_reservation("r:2") is None

    assert await s.settle_budget("r:1", Amount(100, 50, DOLLAR // 10, 1), now=3.0)
    assert not await s.settle_budget("r:1", Amount(999, 999, 999, 9), now=4.0)  # once
    assert not await s.settle_budget("nothing", Amount(), now=4.0)
    after = {a.key: a for a in await s.budget_accounts("a")}
    assert after[month.key].used == Amount(100, 50, DOLLAR // 10, 1)
    assert after[month.key].held == Amount()
    settled = await s.get_reservation("r:1")
    assert settled is not None and settled.settled
    assert settled.actual == Amount(100, 50, DOLLAR // 10, 1)
    spent = await s.reserve_budget(_ask("r:3", Amount(900, 0, 0, 0), month), now=4.5)
    assert isinstance(spent, BudgetRefusal) and spent.held == 0 and not spent.may_fit_later
    # The same step reserving again (resumed after a crash) gets its reservation back.
    again = await s.reserve_budget(_ask("r:1", Amount(1, 1, 1, 1), month, day), now=5.0)
    assert again == settled
    assert {a.key: a for a in await s.budget_accounts("a")} == after


async def check_limits_follow_the_latest_draft(h: Harness) -> None:
    """An account takes the limits a reservation brings (a Budget re-applied lower
    refuses what no longer fits); accounts are listed by namespace and key prefix."""
    s = h.store
    wide = _account("a/b@1", max_tool_calls=10)
    assert isinstance(
        await s.reserve_budget(_ask("x:1", Amount(tool_calls=3), wide), now=1), Reservation
    )
    narrow = _account("a/b@1", max_tool_calls=3)
    refused = await s.reserve_budget(_ask("x:2", Amount(tool_calls=1), narrow), now=2)
    assert isinstance(refused, BudgetRefusal) and refused.limit == "max_tool_calls"
    assert refused.current == 3 and refused.value == 3
    await s.reserve_budget(_ask("y:1", Amount(tool_calls=1), _account("a/c@1")), now=3)
    await s.reserve_budget(_ask("z:1", Amount(tool_calls=1), _account("b/b@1", "b")), now=3)
    assert [a.key for a in await s.budget_accounts("a")] == ["a/b@1", "a/c@1"]
    assert [a.key for a in await s.budget_accounts("a", prefix="a/b@")] == ["a/b@1"]
    assert [a.limits.max_tool_calls for a in await s.budget_accounts("a", prefix="a/b")] == [3]


async def check_release_frees_what_a_run_holds(h: Harness) -> None:
    """release_budget settles a run's held reservations with nothing used, and only
    that run's."""
    s = h.store
    account = _account("a/t@1", max_cost_nusd=100)
    for rid, run in (("p:1", "p"), ("p:2", "p"), ("q:1", "q")):
        assert isinstance(
            await s.reserve_budget(_ask(rid, Amount(cost_nusd=30), account, run=run), now=1),
            Reservation,
        )
    await s.settle_budget("p:1", Amount(cost_nusd=10), now=2)
    assert await s.release_budget("p", now=3) == 1
    assert await s.release_budget("p", now=4) == 0
    [stored] = await s.budget_accounts("a")
    assert (stored.used.cost_nusd, stored.held.cost_nusd) == (10, 30)  # q's still held


async def check_concurrent_reservations_never_pass_a_limit(h: Harness) -> None:
    """Sixty reservations of 3 units race on a limit of 100 from two stores on one
    database: exactly 33 are held, and after settling, the account used exactly the
    sum of what each settled reservation reported."""
    peer = await h.open_peer()
    try:
        account = _account("a/race@1", max_cost_nusd=100)
        stores = [h.store, peer]
        results = await asyncio.gather(
            *(
                stores[i % 2].reserve_budget(_ask(f"s:{i}", Amount(cost_nusd=3), account), now=1)
                for i in range(60)
            )
        )
        held = [r for r in results if isinstance(r, Reservation)]
        assert len(held) == 33
        assert all(isinstance(r, BudgetRefusal) and r.over > 0 for r in results if r not in held)
        await asyncio.gather(
            *(
                stores[i % 2].settle_budget(r.id, Amount(cost_nusd=1 + i % 3), now=2)
                for i, r in enumerate(held)
            )
        )
        [stored] = await h.store.budget_accounts("a")
        assert stored.held == Amount()
        assert stored.used.cost_nusd == sum(1 + i % 3 for i in range(len(held)))
    finally:
        await peer.close()


async def check_an_append_settles_with_what_it_records(h: Harness) -> None:
    """A settle rides with the append that records its step: refused with it (a stale
    writer) it settles nothing; committed, once; a terminal status releases what the
    run still holds, in the same write."""
    s = h.store
    await s.create_run(NewRun("r", "a", "bot", 1.0), [EventDraft("run.created", {}, 1.0)])
    account = _account("a/t@1", max_cost_nusd=100)
    for rid in ("r:1", "r:2"):
        await s.reserve_budget(_ask(rid, Amount(cost_nusd=40), account), now=1)
    settle = RunUpdate(settles=(("r:1", Amount(cost_nusd=7)),))
    with pytest.raises(LeaseLost):
        await s.append_events("r", [EventDraft("x", {}, 2.0)], expected_seq=0, update=settle)
    [before] = await s.budget_accounts("a")
    assert (before.used.cost_nusd, before.held.cost_nusd) == (0, 80)
    seq = await s.append_events("r", [EventDraft("x", {}, 2.0)], expected_seq=1, update=settle)
    [after] = await s.budget_accounts("a")
    assert (after.used.cost_nusd, after.held.cost_nusd) == (7, 40)
    end = RunUpdate(status="succeeded", settles=(("r:1", Amount(cost_nusd=99)),))
    await s.append_events("r", [EventDraft("run.finished", {}, 3.0)], expected_seq=seq, update=end)
    [ended] = await s.budget_accounts("a")
    assert (ended.used.cost_nusd, ended.held.cost_nusd) == (7, 0)  # r:1 once; r:2 released
    # Nothing more is held for the ended run (a stale execution asking, after another
    # worker ended the run): its end released all, so nothing would release this.
    with pytest.raises(LeaseLost, match="has ended succeeded"):
        await s.reserve_budget(_ask("r:3", Amount(cost_nusd=1), account), now=4)
    [still] = await s.budget_accounts("a")
    assert still.held.cost_nusd == 0
    assert await s.get_reservation("r:3") is None


async def check_gc_takes_the_settled_reservations_of_the_runs_it_removes(h: Harness) -> None:
    """A run removed by gc takes its settled reservations with it; what its account used
    stays, and another run's reservations stay."""
    s = h.store
    account = _account("a/t@1", max_cost_nusd=100)
    for run in ("done", "live"):
        await s.create_run(NewRun(run, "a", "bot", 1.0), [EventDraft("run.created", {}, 1.0)])
        await s.reserve_budget(_ask(f"{run}:1", Amount(cost_nusd=20), account, run=run), now=1)
    end = RunUpdate(status="succeeded", settles=(("done:1", Amount(cost_nusd=5)),))
    await s.append_events("done", [EventDraft("run.finished", {}, 2.0)], expected_seq=1, update=end)
    removed = await s.gc(finished_before=time.time() + 3600)
    assert removed.run_ids == ("done",)
    assert await s.get_reservation("done:1") is None
    assert await s.get_reservation("live:1") is not None
    [stored] = await s.budget_accounts("a")
    assert (stored.used.cost_nusd, stored.held.cost_nusd) == (5, 20)


LEDGER_CHECKS = [
    check_reserve_settle_and_refuse,
    check_limits_follow_the_latest_draft,
    check_release_frees_what_a_run_holds,
    check_concurrent_reservations_never_pass_a_limit,
    check_an_append_settles_with_what_it_records,
    check_gc_takes_the_settled_reservations_of_the_runs_it_removes,
]
"""The ledger checks, in a stable order."""
