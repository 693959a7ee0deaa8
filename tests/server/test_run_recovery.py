"""Resume and resolve over real HTTP, after the server executing two runs was killed
mid tool call: a second server (taking up nothing by itself) resumes them when a key
asks; the run whose call may have happened waits for a person, who resolves it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.spec import ScriptedRule
from tests.conftest import call
from tests.server.harness import Api, start_serve
from tests.server.run_fixtures import events_of, in_tool_call

RESOURCES = (
    "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {{name: m}}\n"
    "spec: {{provider: openai, base_url: '{url}', max_retries: 0}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {{name: record}}\n"
    "spec: {{kind: python, callable: 'tests.sample_tools:record', idempotent: true}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {{name: charge}}\n"
    "spec: {{kind: python, callable: 'tests.sample_tools:charge', idempotent: false}}\n"
    "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {{name: bot}}\n"
    "spec: {{model: m, tools: [record, charge]}}\n"
)


@pytest.fixture
def model() -> Iterator[ModelTestServer]:
    """A scripted model server: ``safe`` records a line, ``once`` charges 7."""
    server = ModelTestServer()
    server.start_in_thread()
    steps = {
        "^safe": call("record", text="hello"),
        "^once": call("charge", amount=7),
    }
    server.set_rules(
        [
            ScriptedRule.model_validate(
                {"match": match, "steps": [{"tool_calls": [c]}, {"content": "{last_tool_result}"}]}
            )
            for match, c in steps.items()
        ]
    )
    try:
        yield server
    finally:
        server.stop_thread()


async def test_a_killed_servers_runs_are_resumed_and_resolved_when_a_key_asks(
    tmp_path: Path, model: ModelTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    monkeypatch.setenv("AGENTRT_TEST_EFFECTS", str(tmp_path / "effects.txt"))
    # The first server's tool calls take a minute: it is killed in the middle of them.
    monkeypatch.setenv("AGENTRT_TEST_RECORD_SLEEP", "60")
    monkeypatch.setenv("AGENTRT_TEST_CHARGE_SLEEP", "60")
    first = start_serve(url, tmp_path, model)
    tenant = f"t-{secrets.token_hex(3)}"
    async with aiohttp.ClientSession() as http:
        try:
            op = Api(first, await first.key(tenant, "operator", name="op"), http)
            assert (await op.apply(RESOURCES.format(url=model.url))).status == 200
            runs = {}
            for what, tool in (("safe", "record"), ("once", "charge")):
                reply = await op.call("POST", "/v1/queries", json={"target": "bot", "input": what})
                runs[what] = reply.body["run"]["id"]
                await in_tool_call(op, runs[what], tool)
        finally:
            first.proc.kill()
            first.proc.wait()  # reaped: its pid is gone, so its leases are known dead
        monkeypatch.setenv("AGENTRT_TEST_RECORD_SLEEP", "0")
        monkeypatch.setenv("AGENTRT_TEST_CHARGE_SLEEP", "0")
        second = start_serve(url, tmp_path, model, "--no-worker")
        try:
            op = Api(second, op.key, http)
            for run_id in runs.values():
                view = (await op.call("GET", f"/v1/runs/{run_id}")).body
                assert view["run"]["status"] == "running", "nobody took it up by itself"
            safe = await op.call("POST", f"/v1/runs/{runs['safe']}/resume", json={"wait": True})
            assert safe.status == 200, safe
            assert safe.body["result"]["output"] == "recorded hello"  # its effect, once
            once = await op.call("POST", f"/v1/runs/{runs['once']}/resume", json={"wait": True})
            assert once.status == 200 and once.body["result"]["status"] == "waiting", once
            decided = await op.call(
                "POST",
                f"/v1/runs/{runs['once']}/resolve",
                json={"step": 2, "action": "output", "output": "charged 7", "wait": True},
            )
            assert decided.status == 200, decided
            assert decided.body["result"]["output"] == "charged 7"
            views = {w: (await op.call("GET", f"/v1/runs/{r}")).body for w, r in runs.items()}
        finally:
            second.stop()
    for view in views.values():
        started = [e["data"] for e in events_of(view, "run.started")]
        assert [(s["resumed"], s.get("by")) for s in started][:2] == [
            (False, None),
            (True, "key:op"),
        ]
    decisions = events_of(views["once"], "tool.decision")
    assert [d["data"] for d in decisions] == [
        {"action": "output", "output": "charged 7", "by": "key:op"}
    ]
    charges = (tmp_path / "effects.txt").read_text().count("\tcharge\t")
    assert charges == 1, "the call that may have happened was not made again"
