"""Model fallback through circuit breakers kept in the store, on both stores, over real
HTTP to two test model servers: a primary that answers 429, then 500, then hangs past
the step's timeout, and a backup. Runs complete on the backup, the primary's circuit
opens (later steps skip it without a request), one probe closes it again; every
decision is on its step, a replay arrives at the same end without a model call, and
two runtimes on separate connections share the breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import CircuitPolicy
from agentrt.state import SqliteStore, Store
from agentrt.state.circuits import circuit_key
from tests.conftest import call, resources, rules
from tests.pg import fresh_schema, url_of
from tests.store_calls import StoreCalls

OPEN_S = 1.0
LOOP = {"step_timeout_s": 0.5, "retry": {"max_attempts": 1}}


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two connections to one fresh database of each backend: two processes' stores."""
    if request.param == "sqlite":
        path = tmp_path / "agentrt.db"
        async with await SqliteStore.open(path) as first, await SqliteStore.open(path) as second:
            yield first, second
        return
    from agentrt.state import PostgresStore

    with fresh_schema() as schema:
        async with (
            PostgresStore.from_url(url_of(schema)) as first,
            PostgresStore.from_url(url_of(schema)) as second,
        ):
            yield first, second


@pytest.fixture
async def backup() -> AsyncIterator[ModelTestServer]:
    """The fallback model's own server."""
    async with ModelTestServer(rules({"content": "from backup"})) as server:
        yield server


def _resources(
    primary: ModelTestServer,
    backup: ModelTestServer,
    *,
    loop: dict[str, Any] | None = None,
    tools: list[str] | None = None,
) -> list[Any]:
    """Model ``m`` (the primary: three failures open its circuit for a second), its
    fallback ``backup``, and Agent ``bot``."""
    primary.set_rules(rules({"content": "from primary"}))
    return resources(
        primary.url,
        tools=tools,
        model={"fallbacks": ["backup"], "circuit": {"failures": 3, "open_s": OPEN_S}},
        extra_models={"backup": {"provider": "openai", "base_url": backup.url, "max_retries": 0}},
        agent={"loop": loop or LOOP},
    )


async def _step(store: Store, run_id: str, step: int = 1) -> tuple[dict[str, Any], list[Any]]:
    """A model step's recorded result and its errors (each failed or skipped call)."""
    events = [e for e in await store.read_events(run_id) if e.step == step]
    [result] = [e.data for e in events if e.type == ev.MODEL_RESULT]
    return result, [e.data for e in events if e.type == ev.MODEL_ERROR]


def _route(*entries: tuple[str, str, int]) -> list[dict[str, Any]]:
    return [{"model": m, "outcome": o, "attempts": a} for m, o, a in entries]


async def test_a_failing_primary_opens_its_circuit_and_one_probe_closes_it(
    two_stores: tuple[Store, Store], model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    store = two_stores[0]
    primary = model_server
    async with Runtime(store) as rt:
        await rt.apply(_resources(primary, backup))
        primary.inject(429)
        primary.inject(500)
        runs = [await rt.run("bot", "one"), await rt.run("bot", "two")]
        primary.inject_delay(5)  # hangs past the step's timeout
        runs.append(await rt.run("bot", "three"))
        assert len(primary.requests) == 3
        runs.append(await rt.run("bot", "four"))  # the circuit is open: skipped
        assert len(primary.requests) == 3
        key = circuit_key("default", "m", primary.url)
        opened = await store.get_circuit(key)
        assert opened is not None and (opened.state, opened.failures) == ("open", 3)
        await asyncio.sleep(max(0.0, opened.open_until - time.time()) + 0.05)
        runs.append(await rt.run("bot", "five"))  # the probe
        runs.append(await rt.run("bot", "six"))
        closed = await store.get_circuit(key)
        assert closed is not None and (closed.state, closed.failures, closed.opened) == (
            "closed", 0, 1
        )  # fmt: skip
        assert [r.output for r in runs] == ["from backup"] * 4 + ["from primary"] * 2
        assert len(primary.requests) == 5 and len(backup.requests) == 4
        # Each decision is on its step.
        steps = [await _step(store, r.run_id) for r in runs]
        for (result, errors), why in zip(
            steps[:3], ["http_429", "http_500", "timeout"], strict=True
        ):
            assert result["via"] == "backup"
            assert result["route"] == _route(("m", why, 1), ("backup", "answered", 1))
            assert [(e["model"], e["attempt"], e["why"]) for e in errors] == [("m", 1, why)]
        skipped, [skip] = steps[3]
        assert skipped["route"] == _route(("m", "circuit_open", 0), ("backup", "answered", 1))
        assert skip["why"] == "circuit_open" and "attempt" not in skip
        assert "circuit of its endpoint is open after 3 failed calls" in skip["error"]["message"]
        probed, _ = steps[4]
        assert probed["route"] == [{**_route(("m", "answered", 1))[0], "probe": True}]
        assert "via" not in probed
        assert "route" not in steps[5][0] and not steps[5][1]
        # A replay arrives at the same end from the log alone, never asking a model.
        for run in runs:
            replayed = await rt.replay(run.run_id)
            assert (replayed.status, replayed.output) == (run.status, run.output)
    assert (len(primary.requests), len(backup.requests)) == (5, 4)


async def test_two_runtimes_share_the_breaker_and_let_one_probe_through(
    two_stores: tuple[Store, Store], model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    primary = model_server
    patient = {"step_timeout_s": 10, "retry": {"max_attempts": 1}}  # the probe takes 1.5 s
    async with Runtime(two_stores[0]) as one, Runtime(two_stores[1]) as two:
        await one.apply(_resources(primary, backup, loop=patient))
        primary.inject(500, count=3)
        for i in range(3):
            assert (await one.run("bot", f"fail {i}")).output == "from backup"
        # The other runtime never saw the primary fail, and skips it all the same.
        elsewhere = await two.run("bot", "elsewhere")
        assert elsewhere.output == "from backup" and len(primary.requests) == 3
        await asyncio.sleep(OPEN_S + 0.05)
        primary.inject_delay(1.5)  # the probe is slow: the others arrive while it runs
        together = await asyncio.gather(
            *(rt.run("bot", f"together {i}") for i in range(4) for rt in (one, two))
        )
        assert len(primary.requests) == 4, "exactly one probe across both runtimes"
        assert sorted(r.output for r in together) == ["from backup"] * 7 + ["from primary"]
        circuit = await two_stores[1].get_circuit(circuit_key("default", "m", primary.url))
        assert circuit is not None and circuit.state == "closed"
        await asyncio.sleep(1.05)  # both runtimes' caches read the closed circuit again
        after = [await rt.run("bot", "after") for rt in (one, two)]
    assert [r.output for r in after] == ["from primary"] * 2


async def test_a_circuit_that_opens_stops_the_retries_and_a_failed_probe_opens_it_again(
    store: SqliteStore, model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    primary = model_server
    loop = {"step_timeout_s": 5, "retry": {"max_attempts": 5, "initial_backoff_s": 0.01}}
    async with Runtime(store) as rt:
        await rt.apply(_resources(primary, backup, loop=loop))
        primary.inject(503, count=10)
        first = await rt.run("bot", "x")
        # Three failures open the circuit: the step goes on at once, not after 5 attempts.
        assert first.output == "from backup" and len(primary.requests) == 3
        result, errors = await _step(store, first.run_id)
        assert result["route"] == _route(("m", "http_503", 3), ("backup", "answered", 1))
        assert [e.get("retry_in") is not None for e in errors] == [True, True, False]
        await asyncio.sleep(OPEN_S + 0.05)
        probe = await rt.run("bot", "y")  # the probe gets a 503 too: open again
        assert probe.output == "from backup" and len(primary.requests) == 4
        result, _ = await _step(store, probe.run_id)
        assert result["route"][0] == {"model": "m", "outcome": "http_503", "attempts": 1}
        circuit = await store.get_circuit(circuit_key("default", "m", primary.url))
        assert circuit is not None and (circuit.state, circuit.opened) == ("open", 2)
        await rt.run("bot", "z")
        assert len(primary.requests) == 4  # skipped again


async def test_a_request_the_endpoint_refuses_does_not_count_and_off_means_off(
    store: SqliteStore, model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    primary = model_server
    async with Runtime(store) as rt:
        await rt.apply(_resources(primary, backup))
        primary.inject(400, count=5)  # the request's fault: the endpoint answered it
        for _ in range(5):
            assert (await rt.run("bot", "x")).output == "from backup"
        assert await store.get_circuit(circuit_key("default", "m", primary.url)) is None
        applied = _resources(primary, backup)
        model = applied[0]
        spec = model.spec.model_copy(update={"circuit": CircuitPolicy(enabled=False)})
        await rt.apply([model.model_copy(update={"spec": spec}), *applied[1:]])
        primary.inject(500, count=5)
        for _ in range(5):
            assert (await rt.run("bot", "y")).output == "from backup"
    assert len(primary.requests) == 10  # never skipped
    assert await store.get_circuit(circuit_key("default", "m", primary.url)) is None


async def test_a_resumed_run_keeps_the_route_its_steps_recorded(
    store: SqliteStore, model_server: ModelTestServer, backup: ModelTestServer, effects: Path
) -> None:
    primary = model_server
    pay = rules({"tool_calls": [call("charge_approved", amount=250)]}, {"content": "paid"})
    backup.set_rules(pay)
    async with Runtime(store) as rt:
        await rt.apply(_resources(primary, backup, tools=["charge_approved"]))
        primary.set_rules(pay)
        primary.inject(500)
        waiting = await rt.run("bot", "pay")  # step 1 on the backup, then waits for approval
        assert waiting.status == "waiting_approval"
        before = (len(primary.requests), len(backup.requests))
        done = await rt.approve(waiting.run_id, 2)
    assert done.output == "paid"
    first, _ = await _step(store, waiting.run_id, 1)
    assert first["via"] == "backup"
    # Step 1 came from the log; only step 3, new, was routed (to the primary, closed).
    assert (len(primary.requests), len(backup.requests)) == (before[0] + 1, before[1])
    third, _ = await _step(store, waiting.run_id, 3)
    assert "via" not in third


async def test_a_healthy_endpoint_costs_no_circuit_write_and_a_read_a_second(
    store: SqliteStore, model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    counted = StoreCalls(store)
    async with Runtime(counted) as rt:  # type: ignore[arg-type]
        await rt.apply(_resources(model_server, backup))
        started = time.monotonic()
        for i in range(20):
            assert (await rt.run("bot", f"q{i}")).output == "from primary"
        took = time.monotonic() - started
    assert counted.counts["report_circuit"] == 0
    # One read of the circuit a second at most, whatever the number of calls.
    assert 1 <= counted.counts["get_circuit"] <= took + 1, (counted.counts, took)


async def test_a_step_whose_every_model_is_skipped_fails_at_once_and_replays_so(
    store: SqliteStore, model_server: ModelTestServer, backup: ModelTestServer
) -> None:
    primary = model_server
    async with Runtime(store) as rt:
        await rt.apply(_resources(primary, backup))
        primary.inject(500, count=3)
        backup.inject(503, count=5)  # the backup's circuit: the default, 5 in a row
        ended = [await rt.run("bot", f"q{i}") for i in range(5)]
        assert [r.status for r in ended] == ["failed"] * 5
        assert (len(primary.requests), len(backup.requests)) == (3, 5)
        stopped = await rt.run("bot", "nothing left")
        assert (len(primary.requests), len(backup.requests)) == (3, 5)  # neither was called
        assert stopped.status == "failed"
        assert "'backup' was skipped, not called" in (stopped.reason or "")
        events = await store.read_events(stopped.run_id)
        errors = [e.data for e in events if e.type == ev.MODEL_ERROR]
        assert [(e["model"], e["why"]) for e in errors] == [
            ("m", "circuit_open"), ("backup", "circuit_open")
        ]  # fmt: skip
        for run in [ended[0], ended[-1], stopped]:
            replayed = await rt.replay(run.run_id)
            assert (replayed.status, replayed.reason) == (run.status, run.reason)
    assert (len(primary.requests), len(backup.requests)) == (3, 5)
