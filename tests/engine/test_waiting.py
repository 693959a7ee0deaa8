"""Waiting without polling: a run executing in another process is waited on through
the store's watch, and the owner notices cancels the same way.

Two runtimes on two connections to one SQLite file stand for two processes; each
connection's store calls are counted, so a read on a timer shows up as a count.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from agentrt import Runtime
from agentrt._owner import new_owner_id
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules
from tests.store_calls import StoreCalls

# The model answers after this long: the quiet window in which nobody should read.
_QUIET_S = 5.0


@pytest.fixture
def counted(stores: tuple[SqliteStore, SqliteStore]) -> tuple[StoreCalls, StoreCalls]:
    """The two connections, each counting its calls: the owner's and the waiter's."""
    return StoreCalls(stores[0]), StoreCalls(stores[1])


async def _in_model_call(server: ModelTestServer) -> None:
    while not server.requests:
        await asyncio.sleep(0.01)


async def test_a_waiter_elsewhere_reads_nothing_while_the_run_is_quiet(
    model_server: ModelTestServer, counted: tuple[StoreCalls, StoreCalls]
) -> None:
    model_server.set_rules(rules({"content": "slow answer"}))
    model_server.inject_delay(_QUIET_S)
    owner_calls, waiter_calls = counted
    async with (
        Runtime(owner_calls, resume_interrupted=False) as owner,  # type: ignore[arg-type]
        Runtime(waiter_calls, resume_interrupted=False) as waiter,  # type: ignore[arg-type]
    ):
        await owner.apply(resources(model_server.url))
        run = await owner.submit("bot", "hi")
        await asyncio.wait_for(_in_model_call(model_server), 30)
        owner_before = owner_calls.total()
        waiting = asyncio.create_task(waiter.wait(run.id))
        await asyncio.sleep(1.0)  # the waiter has read the run once and sleeps on the watch
        quiet_start = waiter_calls.total()
        await asyncio.sleep(_QUIET_S - 2.0)
        waiter_quiet = waiter_calls.total() - quiet_start
        owner_quiet = owner_calls.total() - owner_before
        result = await asyncio.wait_for(waiting, 30)
    assert result.status == "succeeded" and result.output == "slow answer"
    # While the model thinks, neither side reads: no wait loop, no cancel poll.
    assert waiter_quiet == 0, waiter_calls.counts
    assert owner_quiet == 0, owner_calls.counts
    # The waiter read the run when it began and when the run was written at its end.
    assert waiter_calls.counts["get_run"] <= 4, waiter_calls.counts
    assert waiter_calls.total() <= 8, waiter_calls.counts


async def test_a_cancel_from_elsewhere_reaches_a_quiet_owner_through_the_watch(
    model_server: ModelTestServer, counted: tuple[StoreCalls, StoreCalls]
) -> None:
    model_server.set_rules(rules({"content": "never"}))
    model_server.inject_delay(60)
    owner_calls, other_calls = counted
    async with (
        Runtime(owner_calls, cancel_poll_s=0.1) as owner,  # type: ignore[arg-type]
        Runtime(other_calls, resume_interrupted=False) as other,  # type: ignore[arg-type]
    ):
        await owner.apply(resources(model_server.url))
        run = await owner.submit("bot", "hi")
        await asyncio.wait_for(_in_model_call(model_server), 30)
        await asyncio.sleep(1.0)
        looked = owner_calls.counts["cancel_requests"]
        await asyncio.sleep(1.0)
        # Ten rounds of a 0.1 s poll would have read ten times.
        assert owner_calls.counts["cancel_requests"] == looked
        started = time.monotonic()
        ended = await other.cancel(run.id, wait_s=20)
        took = time.monotonic() - started
    assert ended.status == "cancelled"
    assert took < 10, f"the cancel took {took:.1f}s to be noticed"


async def test_a_waiter_takes_over_soon_after_the_holder_on_this_host_dies(
    model_server: ModelTestServer, counted: tuple[StoreCalls, StoreCalls]
) -> None:
    model_server.set_rules(rules({"content": "taken over"}))
    owner_calls, waiter_calls = counted
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        async with Runtime(waiter_calls, resume_interrupted=False) as waiter:  # type: ignore[arg-type]
            await waiter.apply(resources(model_server.url))
            run = await waiter.submit("bot", "hi", start=False)
            # A live process on this host holds the run for an hour.
            owner = new_owner_id().split(":")[0] + f":{holder.pid}:dead01"
            leased = await owner_calls.acquire_lease(run.id, owner, 3600, now=time.time())
            assert leased is not None and leased.lease_owner == owner
            waiting = asyncio.create_task(waiter.wait(run.id))
            await asyncio.sleep(1.5)
            assert not waiting.done(), "a live holder's run is waited on, not taken"
            holder.kill()
            await holder.wait()
            started = time.monotonic()
            result = await asyncio.wait_for(waiting, 30)
            took = time.monotonic() - started
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    assert result.status == "succeeded" and result.output == "taken over"
    assert took < 5, f"the takeover waited {took:.1f}s, not the hour of the lease"
