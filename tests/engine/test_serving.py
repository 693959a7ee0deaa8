"""A runtime serving the queue: concurrency, waking on the store, draining, and the
turns of one session in order across workers.

Runtimes on separate connections to one SQLite file stand for separate worker
processes (the fleet tests do it with real processes on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules


async def _until(check: object, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_worker_claims_no_more_than_its_concurrency(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    model_server.inject_delay(0.3, count=100)
    submitter_store, worker_store = stores
    async with (
        Runtime(submitter_store, resume_interrupted=False) as submitter,
        Runtime(worker_store, resume_interrupted=False) as worker,
    ):
        await submitter.apply(resources(model_server.url))
        runs = [await submitter.submit("bot", f"q{i}", start=False) for i in range(8)]
        serving = worker.serving(concurrency=3, poll_s=0.2)
        serve = asyncio.create_task(serving.run(grace_s=5))
        most = 0
        while True:
            most = max(most, serving.state.executing)
            statuses = [(await worker_store.get_run(r.id)).status for r in runs]  # type: ignore[union-attr]
            if all(s == "succeeded" for s in statuses):
                break
            await asyncio.sleep(0.02)
        serving.drain()
        assert await serve == []
    assert most == 3, f"at most {most} at once"


async def test_a_serving_worker_is_woken_by_a_run_queued_elsewhere(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(rules({"content": "woken"}))
    submitter_store, worker_store = stores
    async with (
        Runtime(submitter_store, resume_interrupted=False) as submitter,
        Runtime(worker_store, resume_interrupted=False) as worker,
    ):
        await submitter.apply(resources(model_server.url))
        # An hour between polls: only the store's notification can wake it.
        serving = worker.serving(concurrency=10, poll_s=3600)
        serve = asyncio.create_task(serving.run(grace_s=5))
        await _until(lambda: serving.state.phase == "serving")
        await asyncio.sleep(0.3)  # past its first look at the empty queue
        started = time.monotonic()
        run = await submitter.submit("bot", "hi", start=False)
        result = await asyncio.wait_for(submitter.wait(run.id), 20)
        took = time.monotonic() - started
        serving.drain()
        await serve
    assert result.status == "succeeded" and result.output == "woken"
    assert took < 5, f"the queued run waited {took:.1f}s for the worker"
    stored = await worker_store.get_run(run.id)
    assert stored is not None and stored.lease_owner is None


async def test_a_drain_lets_runs_end_then_gives_the_others_back(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(
        [*rules({"content": "finished"}, match="short"), *rules({"content": "late"})]
    )
    submitter_store, worker_store = stores
    async with Runtime(submitter_store, resume_interrupted=False) as submitter:
        await submitter.apply(resources(model_server.url))
        short = await submitter.submit("bot", "short", start=False)
        async with Runtime(worker_store, resume_interrupted=False) as worker:
            serving = worker.serving(concurrency=10, poll_s=0.2)
            serve = asyncio.create_task(serving.run(grace_s=3))
            await asyncio.wait_for(worker.wait(short.id), 20)
            model_server.inject_delay(60)
            long = await submitter.submit("bot", "long", start=False)
            await _until(lambda: len(model_server.requests) >= 2)
            serving.drain()
            assert serving.state.phase == "draining" and not serving.state.ready
            started = time.monotonic()
            left = await serve
            took = time.monotonic() - started
        assert left == [long.id]
        assert 1.2 < took < 5, f"the drain took {took:.1f}s for a grace of 3s"
        # The lease was given back: another worker takes the run up at once.
        stored = await submitter_store.get_run(long.id)
        assert stored is not None and stored.status == "running" and stored.lease_owner is None
        model_server.set_rules(rules({"content": "picked up"}))
        assert await submitter.resume_interrupted() == [long.id]
        result = await asyncio.wait_for(submitter.wait(long.id), 20)
    assert result.status == "succeeded" and result.output == "picked up"


async def test_turns_of_one_session_run_in_order_on_different_workers(
    model_server: ModelTestServer, stores: tuple[SqliteStore, SqliteStore]
) -> None:
    model_server.set_rules(
        [*rules({"content": "first answer"}, match="one"), *rules({"content": "second answer"})]
    )
    model_server.inject_delay(2.0)  # the first turn is slow
    first_store, second_store = stores
    async with (
        Runtime(first_store, resume_interrupted=False) as first,
        Runtime(second_store, resume_interrupted=False) as second,
    ):
        await first.apply(resources(model_server.url))
        one = await first.submit("bot", "one", session="chat")
        await _until(lambda: len(model_server.requests) >= 1)
        two = await second.submit("bot", "two", session="chat")
        second_result = await asyncio.wait_for(second.wait(two.id), 30)
        first_run = await second_store.get_run(one.id)
    assert first_run is not None and first_run.status == "succeeded"
    assert second_result.status == "succeeded"
    # The second turn started after the first ended, and saw it.
    second_request = model_server.requests[1]
    said = [m.get("content") for m in second_request["messages"]]
    assert "first answer" in said, said
    assert first_run.finished_at is not None
