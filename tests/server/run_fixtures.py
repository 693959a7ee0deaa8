"""Runs in each state the run actions care about, made over the API, and the
resources and scripts behind them."""

from __future__ import annotations

import asyncio
from typing import Any

from agentrt.spec import ScriptedRule
from tests.conftest import call
from tests.server.harness import Api


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
    """The run's read model once its status is one of ``statuses`` (within 30 s)."""
    async with asyncio.timeout(30):
        while True:
            reply = await api.call("GET", f"/v1/runs/{run_id}")
            assert reply.status == 200, reply
            if reply.body["run"]["status"] in statuses:
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
