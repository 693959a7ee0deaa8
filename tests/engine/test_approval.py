"""Human approval: a run waits durably, survives a restart, and the tool runs once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules

ROOT = Path(__file__).resolve().parents[2]
PAY = rules(
    {"tool_calls": [call("charge_approved", amount=250), call("charge_approved", amount=5)]},
    {"content": "{last_tool_result}"},
)


async def test_deny_reaches_the_model_and_small_amounts_need_no_approval(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(PAY)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, tools=["charge_approved"]))
        waiting = await rt.run("bot", "pay")
        assert waiting.status == "waiting_approval"
        assert "step 2 (charge_approved) needs approval;" in (waiting.reason or "")
        assert not effects.exists()  # nothing ran before the decision, not even the small one
        result = await rt.approve(waiting.run_id, 2, approved=False, reason="over budget", by="ana")
        replayed = await rt.replay(waiting.run_id)
    assert result.status == "succeeded"
    tool_messages = [
        m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "tool"
    ]
    assert tool_messages == ["denied by ana: over budget", "charged 5"]
    assert effects.read_text().count("\tcharge\t") == 1  # only the 5, which needed no approval
    assert replayed.output == result.output
    events = await store.read_events(waiting.run_id)
    assert [e.type for e in events if e.step == 2] == [
        ev.APPROVAL_REQUESTED,
        ev.APPROVAL_DECIDED,
        ev.TOOL_CALL,
        ev.TOOL_RESULT,
    ]


def test_approval_survives_a_killed_runtime_and_the_tool_runs_once(tmp_path: Path) -> None:
    server = ModelTestServer(PAY)
    server.start_in_thread()
    db, effects = tmp_path / "a.db", tmp_path / "effects.txt"
    env = {
        **os.environ,
        "AGENTRT_STORE": str(db),
        "AGENTRT_TEST_EFFECTS": str(effects),
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    cmd = [sys.executable, "-m", "agentrt.cli.main"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cmd, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    try:
        spec = tmp_path / "spec"
        spec.mkdir()
        import yaml

        docs = [
            r.model_dump(mode="json", exclude_defaults=True)
            for r in resources(server.url, tools=["charge_approved"])
        ]
        (spec / "all.yaml").write_text(yaml.safe_dump_all(docs))
        assert cli("apply", "-f", str(spec)).returncode == 0
        waiting = cli("run", "bot", "pay", "--json")
        assert waiting.returncode == 3, waiting.stderr  # waits for a person
        run_id = json.loads(waiting.stdout)["run_id"]
        assert json.loads(waiting.stdout)["status"] == "waiting_approval"

        # A long-lived runtime is running when the process is killed.
        worker = subprocess.Popen(
            [*cmd, "worker", "--poll", "0.05"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # let it start; correctness does not depend on this
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        listed = json.loads(cli("runs", "list", "--json").stdout)
        assert listed[0]["status"] == "waiting_approval"
        assert not effects.exists()

        approved = cli("approve", run_id, "2", "--json")
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["output"] == "charged 5"
        lines = effects.read_text().splitlines()
        assert sorted(line.split("\t")[2] for line in lines) == ["250", "5"]  # each exactly once
        again = cli("approve", run_id, "2")
        assert again.returncode == 2 and "not waiting for approval" in again.stderr
    finally:
        server.stop_thread()
