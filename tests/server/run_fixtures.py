"""Runs in each state the run actions care about, made over the API, and the
resources and scripts behind them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from agentrt.spec import ScriptedRule
from agentrt.state import Store
from tests.conftest import call
from tests.server.harness import CMD, ROOT, Api


def yaml(model_url: str) -> str:
    """Model ``m``; Tools ``add`` (needs approval) and ``nap``; Agents ``bot``, ``echo``."""
    doc = "---\napiVersion: agentrt.dev/v1\n"
    return (
        f"{doc}kind: Model\nmetadata: {{name: m}}\n"
        f"spec: {{provider: openai, base_url: '{model_url}', max_retries: 0}}\n"
        f"{doc}kind: Tool\nmetadata: {{name: add}}\n"
        "spec: {kind: python, callable: 'tests.sample_tools:add', idempotent: true, "
        "approval: {required: true}}\n"
        f"{doc}kind: Tool\nmetadata: {{name: nap}}\n"
        "spec: {kind: python, callable: 'tests.sample_tools:sleep', idempotent: true}\n"
        f"{doc}kind: Agent\nmetadata: {{name: bot}}\n"
        "spec: {model: m, instructions: be brief, tools: [add, nap]}\n"
        f"{doc}kind: Agent\nmetadata: {{name: echo}}\nspec: {{model: m}}\n"
    )


def script() -> list[ScriptedRule]:
    """``add ...`` waits for approval, ``nap ...`` sleeps a minute in a tool, anything
    else is answered at once."""
    rules: list[dict[str, Any]] = [
        {
            "match": "^add",
            "steps": [
                {"tool_calls": [call("add", a=2, b=3)]},
                {"content": "got {last_tool_result}"},
            ],
        },
        {
            "match": "^nap",
            "steps": [{"tool_calls": [call("nap", seconds=60)]}, {"content": "rested"}],
        },
        {"match": ".*", "steps": [{"content": "ok"}]},
    ]
    return [ScriptedRule.model_validate(r) for r in rules]


async def submitted(api: Api, input: str, *, target: str = "bot", wait: bool = False) -> str:
    """A run of ``target`` started with ``api``'s key; its id."""
    reply = await api.call(
        "POST", "/v1/queries", json={"target": target, "input": input, "wait": wait}
    )
    assert reply.status in (200, 202), reply
    run_id: str = reply.body["run"]["id"]
    return run_id


async def until(api: Api, run_id: str, *statuses: str) -> dict[str, Any]:
    """The run's read model once its status is one of ``statuses`` (within 30 s) and,
    unless that is ``running``, its worker let its lease go (it wrote all it will)."""
    async with asyncio.timeout(30):
        while True:
            reply = await api.call("GET", f"/v1/runs/{run_id}")
            assert reply.status == 200, reply
            run = reply.body["run"]
            if run["status"] in statuses and (
                run["status"] == "running" or run["lease_owner"] is None
            ):
                view: dict[str, Any] = reply.body
                return view
            await asyncio.sleep(0.05)


async def in_tool_call(api: Api, run_id: str, tool: str) -> dict[str, Any]:
    """The run's read model once it recorded a call of ``tool`` and no result yet."""
    async with asyncio.timeout(30):
        while True:
            view = (await api.call("GET", f"/v1/runs/{run_id}")).body
            types = [(e["type"], e["data"].get("name")) for e in view["events"]]
            if ("tool.call", tool) in types and types[-1][0] != "tool.result":
                return view
            await asyncio.sleep(0.05)


def events_of(view: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    """The events of a run's read model of one type."""
    return [e for e in view["events"] if e["type"] == type_]


PAYER = """\
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: charge}
spec: {kind: python, callable: 'tests.sample_tools:charge', idempotent: false}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: payer}
spec: {model: m, tools: [charge]}
"""
"""Agent ``payer`` with Tool ``charge``, whose call is an effect that may not be made twice
(with the resources of :func:`yaml`, for its Model)."""


def charge_rules() -> list[ScriptedRule]:
    """``once ...`` charges 7 and answers what the charge returned."""
    steps = [{"tool_calls": [call("charge", amount=7)]}, {"content": "{last_tool_result}"}]
    return [ScriptedRule.model_validate({"match": "^once", "steps": steps})]


async def stranded(store_url: str, tenant: str, effects: Path, count: int) -> list[str]:
    """``count`` runs of ``payer`` in ``tenant`` that a process over the store was
    executing, killed in the middle of each run's ``charge`` call: running, held by a
    dead process, and nobody knows whether the charge happened. Their ids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTRT_")}
    env.update(
        PYTHONPATH=str(ROOT), AGENTRT_STORE=store_url, AGENTRT_TEST_EFFECTS=str(effects),
        AGENTRT_TEST_CHARGE_SLEEP="60",
    )  # fmt: skip
    quiet = asyncio.subprocess.DEVNULL
    procs = []
    for i in range(count):
        command = [*CMD, "run", "payer", f"once {i}", "-n", tenant]
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=ROOT, stdout=quiet, stderr=quiet
        )
        procs.append(proc)
    try:
        async with Store.from_url(store_url) as store, asyncio.timeout(60):
            while True:
                runs = await store.list_runs(namespace=tenant, statuses=["running"])
                calling = [r.id for r in runs if r.agent == "payer" and await _in_call(store, r.id)]
                if len(calling) >= count:
                    break
                await asyncio.sleep(0.1)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()  # reaped: its pid is gone, so its leases are known dead
    return calling


async def _in_call(store: Store, run_id: str) -> bool:
    """Whether the run's last event is the intent of a ``charge`` call."""
    events = await store.read_events(run_id)
    return bool(events) and events[-1].type == "tool.call"
