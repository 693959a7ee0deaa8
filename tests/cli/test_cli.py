"""The `agentrt` command as a shell user meets it: output, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt.cli.main import main
from agentrt.models.testserver import ModelTestServer
from tests.conftest import call, rules

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {{name: m}}
spec: {{provider: openai, base_url: "{url}", max_retries: 0}}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {{name: add}}
spec: {{kind: python, callable: "tests.sample_tools:add", idempotent: true}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {{name: bot}}
spec:
  model: m
  instructions: "{instructions}"
  tools: [add]
"""


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    srv = ModelTestServer(
        rules(
            {"tool_calls": [call("add", a=40, b=2)]}, {"content": "the sum is {last_tool_result}"}
        )
    )
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "cli.db"))
    monkeypatch.setenv("NO_COLOR", "1")
    yield main


def _apply(tmp_path: Path, url: str, instructions: str = "Be exact.") -> Path:
    spec = tmp_path / "spec"
    spec.mkdir(exist_ok=True)
    (spec / "bot.yaml").write_text(SPEC.format(url=url, instructions=instructions))
    return spec


def _json_out(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_apply_get_and_generations(
    cli: object, tmp_path: Path, server: ModelTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _apply(tmp_path, server.url)
    assert main(["apply", "-f", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "Agent/bot (namespace default) applied, generation 1" in out
    assert main(["apply", "-f", str(spec), "--json"]) == 0
    assert {r["generation"] for r in _json_out(capsys)} == {1}  # type: ignore[union-attr]
    _apply(tmp_path, server.url, instructions="Be brief.")
    assert main(["--json", "apply", "-f", str(spec)]) == 0
    generations = {r["name"]: r["generation"] for r in _json_out(capsys)}  # type: ignore[union-attr]
    assert generations == {"m": 1, "add": 1, "bot": 2}
    assert main(["get", "agents"]) == 0
    assert "bot" in capsys.readouterr().out
    assert main(["get", "Agent", "bot"]) == 0
    shown = capsys.readouterr().out
    assert "instructions: Be brief." in shown and "generation: 2" in shown
    assert main(["get", "Agent", "nope"]) == 2
    assert "not found" in capsys.readouterr().err


def test_invalid_spec_exit_2_with_file_field_fix(
    cli: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\nspec: {model: m, tools: [t]}\n"
    )
    assert main(["apply", "-f", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: Agent/a: field spec.model" in err
    assert "field spec.tools[0]" in err and "fix:" in err
    assert main(["get", "Agent"]) == 0  # nothing was stored
    assert "a " not in capsys.readouterr().out.splitlines()[-1]


def test_run_show_replay_and_exit_codes(
    cli: object, tmp_path: Path, server: ModelTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "-f", str(_apply(tmp_path, server.url))]) == 0
    capsys.readouterr()
    assert main(["run", "bot", "add 40 and 2"]) == 0
    live = capsys.readouterr().out
    assert "step   1  plan  m → add" in live
    assert "step   2  act   add(a=40, b=2) → 42" in live
    assert "succeeded in 3 steps" in live and "output: the sum is 42" in live

    assert main(["runs", "list", "--json"]) == 0
    (run,) = _json_out(capsys)  # type: ignore[misc]
    assert run["status"] == "succeeded" and run["usage"]["tool_calls"] == 1
    assert main(["runs", "show", run["id"]]) == 0
    tree = capsys.readouterr().out
    assert "step 2  tool add  ok" in tree and '{"a":40,"b":2}' in tree
    assert f"key:    {run['id']}:2:call_0_0" in tree

    requests = len(server.requests)
    assert main(["replay", run["id"], "--json"]) == 0
    assert _json_out(capsys)["output"] == "the sum is 42"  # type: ignore[index]
    assert main(["replay", run["id"]]) == 0
    replayed = capsys.readouterr().out
    assert replayed.splitlines() == live.splitlines()[-2:]  # the same closing lines as the run
    assert len(server.requests) == requests

    assert main(["run", "bot", "x", "--max-tool-calls", "0", "--json"]) == 1
    assert _json_out(capsys)["status"] == "budget_exhausted"  # type: ignore[index]
    assert main(["resume", run["id"]]) == 2
    assert "already succeeded; use `agentrt replay" in capsys.readouterr().err
    assert main(["runs", "show", "run_missing"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["cancel", run["id"]]) == 0
    assert "already succeeded" in capsys.readouterr().out

    assert main(["gc", "--older-than", "0s", "--json"]) == 0
    assert _json_out(capsys)["runs"] == 2  # type: ignore[index]
    assert main(["gc", "--older-than", "soon"]) == 2


def test_session_flag_continues_a_conversation(
    cli: object, tmp_path: Path, server: ModelTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "-f", str(_apply(tmp_path, server.url))]) == 0
    assert main(["run", "bot", "first", "--session", "s1", "-q"]) == 0
    assert main(["run", "bot", "second", "--session", "s1", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["the sum is 42", "the sum is 42"]
    users = [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["first", "second"]


def test_demo_runs_offline_in_a_fresh_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AGENTRT_STORE": str(tmp_path / "demo.db"),
        "AGENTRT_DEMO_NOTES": str(tmp_path),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "act   calculator(expression='366 * 24 * 60 * 60') → 31,622,400" in done.stdout
    assert "succeeded in 10 steps" in done.stdout
    assert "527,040 minutes" in done.stdout
    notes = (tmp_path / "demo-notes.txt").read_text().splitlines()
    assert len(notes) == 1 and notes[0].endswith("A leap year has 527,040 minutes.")


def test_applying_a_query_runs_it_once(
    cli: object, tmp_path: Path, server: ModelTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _apply(tmp_path, server.url)
    (spec / "query.yaml").write_text(
        "apiVersion: agentrt.dev/v1\nkind: Query\nmetadata: {name: q1}\n"
        "spec: {target: bot, input: add them, idempotency_key: q1-once}\n"
    )
    assert main(["apply", "-f", str(spec), "--json"]) == 0
    first = _json_out(capsys)[-1]  # type: ignore[index]
    assert first["kind"] == "Query" and first["run"]["output"] == "the sum is 42"
    assert main(["apply", "-f", str(spec), "--json"]) == 0
    again = _json_out(capsys)[-1]  # type: ignore[index]
    assert again["run"]["run_id"] == first["run"]["run_id"]
    assert len(server.requests) == 2  # the second apply did not run the query again


def test_cancel_from_another_process(tmp_path: Path, server: ModelTestServer) -> None:
    server.set_rules(rules({"tool_calls": [call("sleep", seconds=60)]}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(url=server.url, instructions="x").replace("[add]", "[sleep]")
        + "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: sleep}\n"
        "spec: {kind: python, callable: 'tests.sample_tools:sleep'}\n"
    )
    env = {
        **os.environ,
        "AGENTRT_STORE": str(tmp_path / "x.db"),
        # A lease renewed every 100 s: the owner must notice the cancel without it.
        "AGENTRT_LEASE_TTL": "300",
        "PYTHONPATH": str(ROOT),
        "USER": "ops-oncall",  # who the cancel is recorded as
    }
    cmd = [sys.executable, "-m", "agentrt.cli.main"]
    assert (
        subprocess.run(
            [*cmd, "apply", "-f", str(spec)], env=env, cwd=ROOT, capture_output=True, timeout=60
        ).returncode
        == 0
    )
    worker = subprocess.Popen(
        [*cmd, "run", "bot", "wait", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:  # until the tool call is in flight
            listed = subprocess.run(
                [*cmd, "runs", "list", "--json"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            runs = json.loads(listed.stdout)
            if runs and runs[0]["usage"]["tool_calls"] == 1:
                break
        cancel = subprocess.run(
            [*cmd, "cancel", runs[0]["id"]],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # The owner stopped the run while `cancel` waited for it (a few seconds at most).
        assert cancel.returncode == 0, cancel.stderr
        assert cancel.stdout.strip() == f"{runs[0]['id']} cancelled"
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 1, err
    assert json.loads(out)["status"] == "cancelled"
    shown = subprocess.run(
        [*cmd, "runs", "show", runs[0]["id"], "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(shown.stdout)["run"]["cancel_by"] == "ops-oncall"


def test_memory_commands_add_search_list_forget(
    cli: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["memory", "add", "Backups run at 03:00", "--tag", "ops", "-n", "acme"]) == 0
    assert main(["memory", "add", "Lunch is at noon", "-n", "acme"]) == 0
    capsys.readouterr()
    assert main(["memory", "search", "when do backups run", "-n", "acme", "--json"]) == 0
    [hit] = _json_out(capsys)  # type: ignore[misc]
    assert (hit["text"], hit["tags"], hit["namespace"]) == ("Backups run at 03:00", ["ops"], "acme")
    assert main(["memory", "search", "backups"]) == 0  # another tenant: nothing
    assert capsys.readouterr().out == "no facts\n"
    assert main(["memory", "forget", hit["id"], "-n", "acme"]) == 0
    capsys.readouterr()
    assert main(["memory", "list", "-n", "acme", "--json"]) == 0
    assert [m["text"] for m in _json_out(capsys)] == ["Lunch is at noon"]  # type: ignore[attr-defined]
    assert main(["memory", "forget", hit["id"], "-n", "acme"]) == 2
    assert "no fact" in capsys.readouterr().err


def test_a_run_held_back_by_a_limit_says_why_and_starts_when_one_ends(
    tmp_path: Path, server: ModelTestServer
) -> None:
    """Two `agentrt run` of an Agent with `max_running: 1`: the second says it waits
    for the limit, then answers once the first has ended."""
    server.set_rules(rules({"content": "done"}))
    server.latency_s = 2.0
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(url=server.url, instructions="x") + "  max_running: 1\n")
    env = {**os.environ, "AGENTRT_STORE": str(tmp_path / "x.db"), "PYTHONPATH": str(ROOT),
           "NO_COLOR": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "agentrt.cli.main"]
    applied = subprocess.run([*cmd, "apply", "-f", str(spec)], env=env, cwd=ROOT, timeout=60)
    assert applied.returncode == 0
    first = subprocess.Popen([*cmd, "run", "bot", "one", "--json"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        while len(server.requests) < 1:  # the first holds the only room
            assert first.poll() is None
            time.sleep(0.02)
        second = subprocess.run([*cmd, "run", "bot", "two", "--json"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 0, second.stderr
    assert "is queued; it waits: agent bot is at its max_running=1" in second.stderr
    first_ended = json.loads(out)
    assert first_ended["status"] == json.loads(second.stdout)["status"] == "succeeded"
