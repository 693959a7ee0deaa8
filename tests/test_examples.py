"""Every example in examples/ runs as its comments say."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentrt import Runtime, _json
from agentrt.cli.render import Style, render_run_tree
from agentrt.spec import load_paths
from agentrt.state import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


async def test_hello(store: SqliteStore) -> None:
    async with Runtime(store) as rt:
        await rt.apply(EXAMPLES / "hello")
        result = await rt.run("greeter", "Say hi to Ada")
    assert result.ok and result.output == "Greeted and counted: 358 days to go."


async def test_support_desk_refunds_once_per_session(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv("SUPPORT_DESK_LEDGER", str(ledger))
    async with Runtime(store) as rt:
        await rt.apply(EXAMPLES / "support_desk")
        first = await rt.run(
            "support",
            "Order 1001 arrived broken, please refund it",
            namespace="shop",
            session="alice",
        )
        second = await rt.run(
            "support", "Thanks! Anything else?", namespace="shop", session="alice"
        )
    assert (
        first.output
        == "Sorry about that. I checked the order and refunded 39.90 EUR for order 1001."
    )
    assert second.ok
    assert ledger.read_text().count("\trefund\t1001\t39.90") == 1


def test_python_api_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded - Greeted and counted: 358 days to go." in done.stdout


async def test_local_server_example_over_http(store: SqliteStore) -> None:
    server = subprocess.Popen(  # noqa: ASYNC220 - a server process for the test's lifetime
        [
            sys.executable,
            "-m",
            "agentrt.models.testserver",
            "--port",
            "0",
            "--rules",
            str(EXAMPLES / "local_server" / "rules.yaml"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ},
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        loaded = load_paths([EXAMPLES / "local_server" / "agent.yaml", EXAMPLES / "hello"])
        model = next(item for item in loaded if item.resource.name == "local-http")
        spec = model.resource.spec.model_copy(update={"base_url": url})  # type: ignore[union-attr]
        resource = model.resource.model_copy(update={"spec": spec})
        loaded = [item._replace(resource=resource) if item is model else item for item in loaded]
        async with Runtime(store) as rt:
            await rt.apply(loaded)
            result = await rt.run("http-greeter", "How is the weather?")
        assert result.output == "I can't see the sky from here, but: Hello, weather fan."
    finally:
        server.terminate()
        server.communicate(timeout=10)


async def test_sandbox_example_runs_code_in_a_sandbox(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_SANDBOX_DIR", str(tmp_path / "sandboxes"))
    async with Runtime(store, scratch_root=tmp_path / "scratch") as rt:
        await rt.apply(EXAMPLES / "sandbox")
        result = await rt.run("coder", "Count the primes below 10000")
        events = await store.read_events(result.run_id)
    assert result.output == "Below 10000 there are 1229 primes, the largest is 9973."
    traces = [e.data["trace"] for e in events if e.type == "tool.result"]
    assert [t["reason"] for t in traces] == ["ok", "ok"]
    assert all(t["backend"] in ("gvisor", "bubblewrap") for t in traces)
    assert (tmp_path / "scratch" / result.run_id / "primes.txt").exists()


def test_teams_example_validates_and_draws(capsys: pytest.CaptureFixture[str]) -> None:
    from agentrt.cli.main import main

    assert main(["graph", "show", "research", "-f", str(EXAMPLES / "teams")]) == 0
    mermaid = capsys.readouterr().out
    assert "work-3<br/>agent: writer" in mermaid
    assert "-.->" in mermaid  # the evaluator's bounded loop back to the planner
    assert main(["graph", "show", "review-loop", "-f", str(EXAMPLES / "teams"), "--dot"]) == 0
    assert '"review" -> "write" [label="while review !~ ^ACCEPT' in capsys.readouterr().out


async def test_research_team_rejects_once_then_accepts(store: SqliteStore) -> None:
    async with Runtime(store) as rt:
        await rt.apply(EXAMPLES / "teams")
        result = await rt.run("research", "research: tides")
    assert result.ok, result.reason
    # The answer is the accepted round's findings only: the rejected round's are redone.
    assert result.output == "\n\n".join(["found(PLAN v2)"] * 3)
    events = await store.read_events(result.run_id)
    evaluations = [
        e.data for e in events if e.type == "node.finished" and e.data["node"] == "evaluate"
    ]
    assert [e["output"] for e in evaluations] == ["REJECT: add sources", "ACCEPT"]
    # What the evaluator judged in round 2 was round 2's work, not both rounds'.
    second = (await store.read_events(evaluations[1]["child_run"]))[0].data["input"]
    assert "found(PLAN v2)" in second and "PLAN v1" not in second
    assert events[-1].data["state"]["findings"] == ["found(PLAN v2)"] * 3
    run = await store.get_run(result.run_id)
    assert run is not None
    tree = render_run_tree(run, events, Style())
    assert "├─ node evaluate  round 1  succeeded  child run_" in tree
    assert "│    output: REJECT: add sources" in tree
    assert "│    loops back: round 2 follows" in tree
    assert "├─ node work-3  round 2  succeeded" in tree


def test_memory_example_summarises_a_long_session_and_recalls_a_fact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentrt.cli.main import main

    store = ["--store", str(tmp_path / "memory.db")]
    assert main([*store, "apply", "-f", str(EXAMPLES / "memory")]) == 0
    fact = "Remember that the launch is on 12 March"
    assert main([*store, "run", "assistant", fact, "--session", "monday", "-q"]) == 0
    for i in range(1, 5):
        note = f"Status note {i}: the checklist is green and the team is on track"
        assert main([*store, "run", "assistant", note, "--session", "monday", "-q"]) == 0
    capsys.readouterr()
    assert main([*store, "runs", "list", "--session", "monday", "--json"]) == 0
    last = json.loads(capsys.readouterr().out)[-1]["id"]
    assert main([*store, "runs", "show", last]) == 0
    tree = capsys.readouterr().out
    assert "├─ session memory: 2 earlier turns summarised by model notes-offline" in tree
    assert "│    summary: The user keeps status notes for the launch" in tree
    assert main([*store, "run", "assistant", "When is the launch?", "--session", "fri", "-q"]) == 0
    assert capsys.readouterr().out == f"From memory:\n- {fact}\n"
    assert main([*store, "memory", "search", "launch date", "--json"]) == 0
    assert [m["text"] for m in json.loads(capsys.readouterr().out)] == [fact]


async def test_router_team_routes_by_rule_then_by_model(store: SqliteStore) -> None:
    async with Runtime(store) as rt:
        await rt.apply(EXAMPLES / "teams")
        refund = await rt.run("desk", "Please refund invoice 7")
        password = await rt.run("desk", "My password reset mail never arrives")
        crash = await rt.run("desk", "The app crashes on start")
    assert refund.output == "Billing: the refund is on its way."
    assert password.output == "Account: I sent a new reset link."
    assert crash.output == "Tech: please restart the app and retry."
    # The rule decided the refund without asking the model; the others asked it.
    assert (refund.usage.model_calls, password.usage.model_calls) == (1, 2)


def test_map_reduce_team_summarises_each_document_then_combines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentrt.cli.main import main

    store = ["--store", str(tmp_path / "teams.db")]
    documents = (EXAMPLES / "teams" / "documents.txt").read_text()
    assert main([*store, "apply", "-f", str(EXAMPLES / "teams")]) == 0
    capsys.readouterr()
    assert main([*store, "run", "digest", documents, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == "Ocean digest\n" + "\n\n".join(
        [
            "Tides: the Moon pulls the sea up twice a day.",
            "Reefs: tiny area, a quarter of sea life.",
            "Vents: life fed by chemicals, not light.",
            "Kelp: grows half a metre a day.",
        ]
    )
    assert main([*store, "runs", "show", result["run_id"]]) == 0
    tree = capsys.readouterr().out
    for item in range(4):
        assert f"├─ node each  round 1 item {item}  succeeded  child run_" in tree
    # Each node's child run is drawn under it, with its own steps.
    assert "│    ├─ step 1  model map-offline" in tree
    assert "│    ├─ step 1  model reduce-offline" in tree


# --- the commands each example documents, run as written -----------------------

# Not here: local_server starts a server on a fixed port, sandbox needs a sandbox;
# both are run above through the same resources.
_SHELL_EXAMPLES = [
    "budgets", "fallback", "hello", "memory", "rate_limits", "support_desk", "teams"
]  # fmt: skip
_PLACEHOLDER = re.compile(r"\bRUN(_ID)?\b")


def documented_commands(example: Path) -> list[str]:
    """The shell commands an example documents: in its files' header comments and its README."""
    commands: list[str] = []
    for path in sorted(example.glob("*.yaml")):
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            text = line.removeprefix("#").strip()
            if text.startswith(("agentrt ", "for ")):
                commands.append(text)
    readme = example / "README.md"
    if readme.exists():
        for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), re.DOTALL):
            commands += [line for line in block.splitlines() if line.strip()]
    # Each once, in the order first documented (a README may repeat the header's).
    return [c for c in dict.fromkeys(commands) if not _PLACEHOLDER.search(c)]


def run_as_written(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One documented command, through a shell, from the repository's root, as a user would."""
    return subprocess.run(
        ["bash", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _shell_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AGENTRT_STORE": str(tmp_path / "agentrt.db"),
        "SUPPORT_DESK_LEDGER": str(tmp_path / "ledger.txt"),
        "POLICY_DESK_LEDGER": str(tmp_path / "desk-ledger.txt"),
        "NO_COLOR": "1",
    }


@pytest.mark.parametrize("example", _SHELL_EXAMPLES)
def test_documented_commands_work_as_written(example: str, tmp_path: Path) -> None:
    commands = documented_commands(EXAMPLES / example)
    assert any(c.startswith("agentrt run") for c in commands), commands
    env = _shell_env(tmp_path)
    for command in commands:
        done = run_as_written(command, env)
        assert done.returncode == 0, f"$ {command}\n{done.stdout}{done.stderr}"


def test_support_desk_commands_refund_once_then_answer(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    outputs = [run_as_written(c, env) for c in documented_commands(EXAMPLES / "support_desk")]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    text = "".join(o.stdout for o in outputs)
    assert "output: Sorry about that. I checked the order and refunded 39.90 EUR" in text
    assert "succeeded in 1 step ·" in text  # the second turn answers without a tool
    ledger = (tmp_path / "ledger.txt").read_text()
    assert ledger.count("\trefund\t1001\t39.90") == 1
    # Without its namespace, the error says where the agent is.
    lost = run_as_written('agentrt run support "Where is my order?"', env)
    assert lost.returncode == 2
    assert lost.stderr == (
        "error: no Agent or Team named 'support' in namespace 'default'; "
        "it is in namespace 'shop': run it there (`-n shop`)\n"
    )


def test_budgets_example_stops_runs_at_its_budget_and_shows_it(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    for command in documented_commands(EXAMPLES / "budgets"):
        assert run_as_written(command, env).returncode == 0, command
    runs = [run_as_written('agentrt run thrifty "What is 6 times 7?"', env) for _ in range(6)]
    codes = [r.returncode for r in runs]
    assert 0 in codes and codes[-1] == 1, codes
    assert codes == sorted(codes), codes  # once stopped, every later run stops too
    assert "budget default/daily@" in runs[-1].stdout + runs[-1].stderr
    shown = run_as_written("agentrt budgets", env).stdout
    assert "daily" in shown and "max_cost_usd=0.024" in shown
    used = run_as_written("agentrt budgets --json", env).stdout
    assert _json.loads(used)[0]["used"]["cost_nusd"] <= 24_000_000


def test_budgets_example_raises_a_stopped_run_and_it_goes_on(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    for command in documented_commands(EXAMPLES / "budgets"):
        assert run_as_written(command, env).returncode == 0, command
    listed = run_as_written("agentrt runs list --status budget_exhausted --json", env)
    [stopped] = [r for r in _json.loads(listed.stdout) if r["agent"] == "counter"]
    raised = run_as_written(f"agentrt resume {stopped['id']} --add-budget tool_calls=1", env)
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert "output: Greeted Ada and Bob." in raised.stdout
    assert "step   2" not in raised.stdout  # the first call was not made again
    again = run_as_written(f"agentrt resume {stopped['id']} --add-budget tokens=5", env)
    assert again.returncode == 2
    assert "--add-budget raises a run stopped budget_exhausted" in again.stderr


def test_policy_example_allows_refuses_and_asks_as_documented(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    said = {c: run_as_written(c, env) for c in documented_commands(EXAMPLES / "policy")}
    assert all(done.returncode == 0 for done in said.values()), {
        c: done.stderr for c, done in said.items() if done.returncode
    }

    def output(text: str) -> str:
        [command] = [c for c in said if text in c and c.startswith("agentrt run")]
        return said[command].stdout

    assert "output: refunded 39.90 EUR for order 1001" in output("Refund order 1001")
    assert (
        "output: refused by Policy desk (rule no-huge-refunds): refunds over 1000 EUR need a "
        "manager's form"
    ) in output("order 1003")
    refused = "output: refused by Policy desk: no rule allows this call of {}, and the tenant's"
    assert refused.format("cancel_order") in output("Cancel")
    assert refused.format("read_file") in output("passwd")
    assert "output: order 1001: blue kettle" in output("1001.txt")
    waiting = output("order 1002")
    assert "waiting_approval" in waiting and waiting.rstrip().endswith("exit 3")
    [audit] = [c for c in said if c.startswith("agentrt audit list")]
    assert said[audit].stdout.count("policy.refused") == 3  # 2500 EUR, the cancel, the path
    listed = run_as_written("agentrt runs list -n acme --status waiting_approval --json", env)
    [run] = _json.loads(listed.stdout)
    approved = run_as_written(f"agentrt approve {run['id']} 2", env)
    assert approved.returncode == 0, approved.stderr
    assert "output: refunded 450.00 EUR for order 1002" in approved.stdout
    ledger = (tmp_path / "desk-ledger.txt").read_text().splitlines()
    assert sorted(line.split("\t", 2)[2] for line in ledger) == ["1001\t39.90", "1002\t450.00"]


def test_rate_limits_example_waits_its_turn_and_says_why(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    commands = documented_commands(EXAMPLES / "rate_limits")
    assert run_as_written(commands[0], env).returncode == 0
    began = time.monotonic()
    done = run_as_written(commands[1], env)
    assert done.returncode == 0, done.stderr
    waits = [line for line in done.stdout.splitlines() if " waits " in line]
    assert len(waits) == 2, done.stdout  # the second and third calls; never an error
    assert all("for model paced's rate limit requests_per_minute=60" in w for w in waits)
    assert time.monotonic() - began > 2 * 60 / 59  # its third call began two turns after its first
    assert "output: Oslo: a coat. Lima: sunglasses." in done.stdout


def test_fallback_example_opens_the_primarys_circuit_and_shows_each_route(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    for command in documented_commands(EXAMPLES / "fallback"):
        assert run_as_written(command, env).returncode == 0, command
    circuits = _json.loads(run_as_written("agentrt circuits --json", env).stdout)
    assert [(c["model"], c["state"], c["failures"]) for c in circuits] == [("primary", "open", 2)]
    listed = _json.loads(run_as_written("agentrt runs list --json", env).stdout)
    assert [r["status"] for r in listed] == ["succeeded"] * 3
    trees = [run_as_written(f"agentrt runs show {r['id']}", env).stdout for r in listed]
    # Newest first: the third run skipped the primary, the first two tried it.
    assert "skipped model primary: its circuit is open, not called" in trees[0]
    assert "route: primary circuit_open → backup answered" in trees[0]
    assert all("error model primary attempt 1" in tree for tree in trees[1:])
    assert all("skipped" not in tree for tree in trees[1:])
    replayed = run_as_written(f"agentrt replay {listed[0]['id']}", env)
    assert replayed.returncode == 0 and "output: 42." in replayed.stdout


def test_routing_example_routes_by_tag_escalates_and_names_a_missing_hook(
    tmp_path: Path,
) -> None:
    env = _shell_env(tmp_path)
    outputs = [run_as_written(c, env) for c in documented_commands(EXAMPLES / "routing")]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    text = "".join(o.stdout for o in outputs)
    assert "output: small: on its way." in text and "output: large: it left the depot" in text
    assert 'output: {"answer": 4}' in text
    listed = _json.loads(run_as_written("agentrt runs list --json", env).stdout)
    tree = run_as_written(f"agentrt runs show {listed[0]['id']}", env).stdout  # extractor's
    assert "│    check: failed: it is not JSON (" in tree and ") → large" in tree
    assert "│    routed: escalated from step 1 (small): large" in tree
    # Under the CLI nobody registered the classifier `triage` names: it fails, saying so.
    lost = run_as_written('agentrt run triage "I want a refund"', env)
    assert lost.returncode != 0
    assert "routing.rules[0].when.classifier: 'difficulty'" in lost.stdout + lost.stderr
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "routing" / "run.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "triage 'I want a refund for my parcel' []: large:" in done.stdout
    assert "'by': 'rule', 'label': 'hard'" in done.stdout


def test_kv_cache_example_keeps_each_session_on_one_replica_and_moves_it_once() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "kv_cache" / "run.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    [stopped] = [line.split()[0] for line in lines if line.endswith(" stopped")]
    before = {line.split()[0]: line.split()[4:] for line in lines if " turns 1-2 on " in line}
    after = {line.split()[0]: line.split(" on ")[1].split(", ") for line in lines if "3-5" in line}
    assert len(before) == len(after) == 4
    for session, (first, _and, second) in before.items():
        assert first == second  # both turns on one replica
        [moved] = set(after[session])  # three turns on one replica, after the stop
        assert moved == first if first != stopped else moved != stopped
    assert any(first == stopped for first, _, _ in before.values())
    assert re.search(
        r"^model desk-model: \d+ of \d+ prompt tokens cached \(\d+%\)", done.stdout, re.M
    )


def test_budgets_example_holds_an_agents_and_each_sessions_budget(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    for command in documented_commands(EXAMPLES / "budgets"):
        assert run_as_written(command, env).returncode == 0, command
    shown = run_as_written("agentrt budgets --json", env).stdout
    used = {a["key"].split("@")[0] + a["key"].split("@")[1][10:]: a["used"]["tool_calls"]
            for a in _json.loads(shown) if "greeter" in a["key"]}  # fmt: skip
    assert used == {
        "default/greeter-chat/session:chat-1": 1,
        "default/greeter-chat/session:chat-2": 1,
        "default/greeter-chat/session:chat-3": 0,
        "default/greeter-day": 2,
    }
    again = run_as_written('agentrt run greeter "Greet Bob" --session chat-1', env)
    assert again.returncode == 1
    assert "budget default/greeter-chat@" in again.stdout + again.stderr
    assert "/session:chat-1: max_tool_calls=1 would be passed by 1" in again.stdout + again.stderr


def test_scheduling_example_queues_the_urgent_query_first_and_says_why_each_waits(
    tmp_path: Path,
) -> None:
    env = _shell_env(tmp_path)
    for command in documented_commands(EXAMPLES / "scheduling"):
        assert run_as_written(command, env).returncode == 0, command
    listed = _json.loads(run_as_written("agentrt runs list --json", env).stdout)
    places = {r["id"]: r["queue"] for r in listed}
    assert sorted(p["position"] for p in places.values()) == [1, 2, 3]
    # Newest first: the urgent query, queued last, is first of its tenant's queue.
    assert listed[0]["queue"]["position"] == 1 and listed[1]["queue"]["position"] == 3
    assert all("a free worker slot" in p["reason"] for p in places.values())
    table = run_as_written("agentrt runs list", env).stdout
    assert "WAITS" in table and "#1 " in table
    shown = run_as_written(f"agentrt runs show {listed[0]['id']}", env).stdout
    assert "queue #1 " in shown and "a free worker slot" in shown


def test_audit_example_verifies_the_log_then_names_the_edited_record(tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    done = {c: run_as_written(c, env) for c in documented_commands(EXAMPLES / "audit")}
    assert all(d.returncode == 0 for d in done.values()), {c: d.stderr for c, d in done.items()}
    assert "records intact" in done["agentrt audit verify"].stdout
    last = done['agentrt audit verify || echo "verify failed, as it should"']
    assert "audit log of 'demo' is broken at record 6" in last.stderr
    assert "verify failed, as it should" in last.stdout
    listed = done["agentrt audit list -n demo --kind tool.call"].stdout.splitlines()
    assert len(listed) == 6 and all("tool.call" in line for line in listed[1:]), listed
