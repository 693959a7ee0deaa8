"""A step held back only by other steps' holds waits without crowding the ledger: it
looks again by reading its accounts, and reserves (which locks the tenant's account
rows, so every other step's write queues behind it) only once the read shows room."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentrt.engine.tenant_budgets import (
    ONE_TOOL_CALL,
    BudgetBook,
    budget_accounts,
    hold_tool_call,
)
from agentrt.state import Store
from agentrt.state.budget_ledger import NewReservation, Reservation

_CALLS = {"apiVersion": "agentrt.dev/v1", "kind": "Budget", "metadata": {"name": "calls"},
          "spec": {"period": "day", "max_tool_calls": 1}}  # fmt: skip


def _counted(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reservations ``store`` is asked for, in order (the store does each as ever)."""
    asked: list[str] = []
    reserve: Callable[..., Awaitable[Any]] = store.reserve_budget

    async def counting(reservation: NewReservation, *, now: float) -> Any:
        asked.append(reservation.id)
        return await reserve(reservation, now=now)

    monkeypatch.setattr(store, "reserve_budget", counting)
    return asked


async def test_a_waiting_step_reserves_again_only_once_its_accounts_show_room(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await any_store.put_resource("Budget", "default", "calls", _CALLS, now=time.time())
    now = time.time()
    accounts = await budget_accounts(any_store, "default", now)
    holder = NewReservation("holder:1:tool:1", "holder", ONE_TOOL_CALL, accounts)
    assert isinstance(await any_store.reserve_budget(holder, now=now), Reservation)
    asked = _counted(any_store, monkeypatch)
    book = BudgetBook(any_store)
    waiter = asyncio.create_task(
        hold_tool_call(
            any_store, book, namespace="default", run_id="waiter", step=2, attempt=1, now=now
        )
    )
    deadline = time.monotonic() + 30
    while not book.waiting:  # its first reservation was refused
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # the old backoff would have reserved again six times
    assert not waiter.done() and book.waiting == {"waiter"}
    assert asked == ["waiter:2:tool:1"]
    assert await any_store.release_budget("holder", now=time.time()) == 1
    assert await asyncio.wait_for(waiter, timeout=10) == "waiter:2:tool:1"
    assert asked == ["waiter:2:tool:1"] * 2 and book.waiting == set()
    [account] = await any_store.budget_accounts("default")
    assert account.held.tool_calls == 1 and account.used.tool_calls == 0


async def test_waiters_of_one_tenant_look_again_one_at_a_time(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many waiters in one process take turns: while the room is not there, only the
    first reservation of each is made; once it is, one of them gets it, the others
    see by reading that it is gone and wait on."""
    await any_store.put_resource("Budget", "default", "calls", _CALLS, now=time.time())
    now = time.time()
    accounts = await budget_accounts(any_store, "default", now)
    holder = NewReservation("holder:1:tool:1", "holder", ONE_TOOL_CALL, accounts)
    assert isinstance(await any_store.reserve_budget(holder, now=now), Reservation)
    asked = _counted(any_store, monkeypatch)
    book = BudgetBook(any_store)
    waiters = [
        asyncio.create_task(
            hold_tool_call(
                any_store, book, namespace="default", run_id=f"w{i}", step=1, attempt=1, now=now
            )
        )
        for i in range(20)
    ]
    deadline = time.monotonic() + 30
    while len(book.waiting) < 20:  # each made its first reservation, refused
        assert time.monotonic() < deadline, book.waiting
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert len(asked) == 20
    await any_store.release_budget("holder", now=time.time())
    done, pending = await asyncio.wait(waiters, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(1.0)
    assert len(done) == 1 and not any(w.done() for w in pending)
    # The room went to one waiter; the others read that it was gone and reserved nothing.
    assert len(asked) == 21
    for waiter in pending:
        waiter.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert book.waiting == set()
