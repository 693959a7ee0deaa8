"""The audit log of real runs, on both stores: who started which agent with what input,
every tool call, approvals and denials by whom, refusals, budget stops and resource
changes, each recorded once: replaying a run, resuming it after its process stopped
or applying the same resources again records nothing twice."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.agent_spec import Budgets
from agentrt.state import SqliteStore, Store
from agentrt.state.audit import AuditRecord, verify_audit
from tests.conftest import call, resources, rules

PAY = rules(
    {"tool_calls": [call("charge_approved", amount=250), call("charge_approved", amount=5)]},
    {"content": "{last_tool_result}"},
)


async def _log(store: Store, namespace: str = "default") -> list[AuditRecord]:
    """The tenant's whole audit log, checked to verify."""
    verdict = await verify_audit(store, namespace)
    assert verdict.ok, verdict.message()
    return await store.list_audit(namespace, limit=1000)


def _short(records: list[AuditRecord]) -> list[tuple[Any, ...]]:
    return [(r.kind, r.principal, r.body.get("step")) for r in records]


async def test_a_run_its_calls_and_decisions_are_recorded_once(
    any_store: Store, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    async with Runtime(any_store) as rt:
        applied = resources(model_server.url, tools=["charge_approved"])
        await rt.apply(applied, by="ops")
        await rt.apply(applied, by="ops")  # unchanged: nothing recorded
        paid = await rt.run("bot", "pay", principal="key:ann")
        await rt.approve(paid.run_id, 2, by="key:ops")
        refused = await rt.run("bot", "pay again", principal="key:ann")
        await rt.approve(refused.run_id, 2, approved=False, reason="too much", by="key:ops")
        before = await _log(any_store)
        await rt.replay(paid.run_id)
        await rt.replay(refused.run_id)
    records = await _log(any_store)
    assert records == before, "a replay records nothing"
    assert [(r.kind, r.principal, r.agent, r.body["kind"]) for r in records[:3]] == [
        ("resource.applied", "ops", None, "Model"),
        ("resource.applied", "ops", None, "Tool"),
        ("resource.applied", "ops", "bot", "Agent"),
    ]
    assert all(r.body["generation"] == 1 for r in records[:3])
    paid_log = [r for r in records if r.run_id == paid.run_id]
    assert _short(paid_log[:2]) == [
        ("run.submitted", "key:ann", None),
        ("tool.approved", "key:ops", 2),
    ]
    assert sorted(_short(paid_log[2:])) == [
        ("tool.call", "key:ann", 2),
        ("tool.call", "key:ann", 3),
    ]
    submitted = paid_log[0]
    assert submitted.agent == "bot" and submitted.event_seq == 1
    assert submitted.body["input"] == "pay"
    assert submitted.body["input_sha256"] == hashlib.sha256(b'"pay"').hexdigest()
    call_2 = next(r for r in paid_log if r.kind == "tool.call" and r.body["step"] == 2)
    assert call_2.body["tool"] == "charge_approved" and call_2.body["args"] == '{"amount":250}'
    events = {e.seq: e for e in await any_store.read_events(paid.run_id)}
    assert events[call_2.event_seq].type == ev.TOOL_CALL  # the record names its event
    refused_log = [r for r in records if r.run_id == refused.run_id]
    assert _short(refused_log) == [
        ("run.submitted", "key:ann", None),
        ("tool.denied", "key:ops", 2),
        ("tool.call", "key:ann", 3),  # the denied call never ran: no record of a call
    ]
    assert refused_log[1].body["reason"] == "too much"
    listed = await any_store.list_audit("default", principal="key:ops", kinds=["tool.denied"])
    assert [r.run_id for r in listed] == [refused.run_id]


async def test_a_resumed_run_records_only_what_it_does_again(
    any_store: Store, model_server: ModelTestServer
) -> None:
    """The run's process stops during its second tool call: on resume, the steps taken
    from the log record nothing, and the call made again records its new attempt."""
    model_server.set_rules(
        rules(
            {"tool_calls": [call("add", a=1, b=1)]},
            {"tool_calls": [call("sleep", seconds=1.0)]},
            {"content": "done"},
        )
    )
    async with Runtime(any_store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, tools=["add", "sleep"]))
        run = await rt.submit("bot", "go", principal="key:ann")
        deadline = time.monotonic() + 30
        while not any(r.body.get("tool") == "sleep" for r in await any_store.list_audit("default")):
            assert time.monotonic() < deadline, "the sleep never started"
            await asyncio.sleep(0.01)
    # Leaving the runtime stopped the run in its sleep.
    async with Runtime(any_store) as rt:
        result = await rt.wait(run.id)
    assert result.status == "succeeded"
    calls = await any_store.list_audit("default", run_id=run.id, kinds=["tool.call"])
    assert [(r.body["tool"], r.body["step"], r.body.get("attempt")) for r in calls] == [
        ("add", 2, None),
        ("sleep", 4, None),
        ("sleep", 4, 2),
    ]
    assert len(await _log(any_store)) == 4 + 1 + 3  # resources, the run, its calls


async def test_refusals_and_budget_stops_are_recorded(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    three = {"tool_calls": [call("add_quota", a=1, b=i) for i in range(3)]}
    model_server.set_rules(rules(three, {"content": "done"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["add_quota"]))
        quota = await rt.run("bot", "go", principal="key:ann")
        stopped = await rt.run("bot", "go", principal="key:bob", budgets=Budgets(max_tool_calls=1))
    assert stopped.status == "budget_exhausted"
    refusals = await store.list_audit("default", run_id=quota.run_id, kinds=["tool.refused"])
    assert [(r.principal, r.body["step"], r.body["args"]) for r in refusals] == [
        ("key:ann", 4, '{"a":1,"b":2}')
    ]
    assert "per_run" in refusals[0].body["reason"]
    (stop,) = await store.list_audit("default", kinds=["run.budget_exhausted"])
    assert (stop.run_id, stop.principal) == (stopped.run_id, "key:bob")
    assert "max_tool_calls=1" in stop.body["reason"]
    assert stop.body["error"]["code"] == "budget_exhausted"


async def test_a_resolve_and_a_delete_name_who(
    store: SqliteStore,
    model_server: ModelTestServer,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step left unknown by a stopped process, resolved by a person; a resource deleted."""
    model_server.set_rules(rules({"tool_calls": [call("pg_charge", amount=5)]}, {"content": "ok"}))
    monkeypatch.setenv("AGENTRT_TEST_PG_BEFORE_S", "3600")
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(model_server.url, tools=["pg_charge"]))
        run = await rt.submit("bot", "pay", principal="key:ann")
        while not await store.list_audit("default", kinds=["tool.call"]):
            await asyncio.sleep(0.01)
    monkeypatch.setenv("AGENTRT_TEST_PG_BEFORE_S", "0")
    async with Runtime(store) as rt:
        assert (await rt.wait(run.id)).status == "waiting"
        done = await rt.resolve(run.id, 2, "output", output="paid by hand", by="ana")
        assert await rt.delete_resource("Tool", "pg_charge", by="ana")
        assert not await rt.delete_resource("Tool", "pg_charge", by="ana")
    assert done.status == "succeeded"
    (resolved,) = await store.list_audit("default", kinds=["tool.resolved"])
    assert (resolved.principal, resolved.run_id, resolved.body["step"]) == ("ana", run.id, 2)
    assert (resolved.body["action"], resolved.body["output"]) == ("output", "paid by hand")
    (deleted,) = await store.list_audit("default", kinds=["resource.deleted"])
    assert (deleted.principal, deleted.body) == ("ana", {"kind": "Tool", "name": "pg_charge"})
    assert len(await store.list_audit("default", kinds=["tool.call"])) == 1  # never re-run
