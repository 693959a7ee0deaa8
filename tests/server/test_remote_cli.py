"""The ``agentrt`` command against a server (``AGENTRT_SERVER``, ``AGENTRT_API_KEY``),
in real processes: the same output and exit codes as the command over the server's
store, ``agentrt run``'s live trace drawn from the run's server-sent events."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentrt.state import Store
from tests.conftest import call, rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served, agentrt, shape

ANSWER = "two and three make five"


async def test_run_and_runs_against_a_server_print_what_they_print_over_its_store(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    files = tmp_path / "bot.yaml"
    files.write_text(agent_yaml(served.model.url, tools=True))
    code, out, err = await agentrt("apply", "-f", str(files), server=served, key=admin.key)
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == sorted(
        f"{kind} (namespace {tenant}) applied, generation 1"
        for kind in ("Tool/add", "Model/m", "Agent/bot")
    )
    remote = await agentrt("run", "bot", "2+3?", server=served, key=admin.key)
    local = await agentrt("run", "bot", "2+3?", "-n", tenant, store=served.store_url)
    assert remote[0] == local[0] == 0, (remote, local)
    assert remote[2] == local[2] == ""
    trace = remote[1].splitlines()
    assert (
        re.fullmatch(r"run_[0-9a-f]+ started", trace[0]) and "act   add(a=2, b=3) → 5" in remote[1]
    )
    assert trace[-2:] == [trace[-2], f"output: {ANSWER}"] and "succeeded in 3 steps" in trace[-2]
    assert shape(remote[1]) == shape(local[1])
    # The runs, listed and shown: the same as over the store, byte for byte.
    run_id = trace[0].split()[0]
    outputs = {}
    for args in (
        ("runs", "list"), ("runs", "show", run_id), ("--json", "runs", "show", run_id),
        ("get", "agents"), ("get", "Agent", "bot"), ("--json", "get", "tools"),
    ):  # fmt: skip
        scoped = ("-n", tenant) if args[-1] in ("list", "agents", "bot", "tools") else ()
        over_store = await agentrt(*args, *scoped, store=served.store_url)
        over_http = await agentrt(*args, server=served, key=admin.key)
        assert over_http == over_store and over_http[0] == 0, args
        outputs[args] = over_http[1]
    shown = json.loads(outputs[("--json", "runs", "show", run_id)])
    assert shown["run"]["id"] == run_id and shown["events"][-1]["type"] == "run.finished"
    assert "bot" in outputs[("get", "agents")] and "name: bot" in outputs[("get", "Agent", "bot")]
    assert [t["metadata"]["name"] for t in json.loads(outputs[("--json", "get", "tools")])] == [
        "add"
    ]
    listed = (await agentrt("--json", "runs", "list", server=served, key=admin.key))[1]
    assert [r["id"] for r in json.loads(listed)][1] == run_id  # the local run is newer


async def test_errors_and_commands_not_supported_remotely_say_so_in_one_line(
    served: Served, admin: Api, tmp_path: Path
) -> None:
    key = admin.key
    code, out, err = await agentrt("replay", "run_1", server=served, key=key)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert err.startswith("error: `agentrt replay` does not work against a server;")
    code, _, err = await agentrt("runs", "import", "run.json", server=served, key=key)
    assert code == 2 and "`agentrt runs import` does not work against a server" in err
    # A run the key's tenant does not have, a missing key, a bad key, no server.
    code, _, err = await agentrt("runs", "show", "run_nope", server=served, key=key)
    assert (code, err) == (2, "error: no run with this id for this key\n")
    code, _, err = await agentrt("runs", "list", server=served, key="")
    assert code == 2 and "set AGENTRT_API_KEY" in err
    code, _, err = await agentrt("runs", "list", server=served, key="agrt_bad")
    assert code == 2 and err.startswith("error: the server refused the key (AGENTRT_API_KEY)")
    code, _, err = await agentrt("--server", "http://127.0.0.1:9", "runs", "list", server=served,
                                 key=key)  # fmt: skip
    assert code == 4 and "does not answer" in err and len(err.splitlines()) == 1
    # A file with a mistake is refused as locally, before anything is sent.
    bad = tmp_path / "bad.yaml"
    bad.write_text(agent_yaml(served.model.url).replace("instructions:", "instructoins:"))
    remote = await agentrt("apply", "-f", str(bad), server=served, key=key)
    local = await agentrt("apply", "-f", str(bad), store=f"sqlite:///{tmp_path / 'local.db'}")
    assert remote == local and remote[0] == 2 and "instructoins" in remote[2]
    # And one the server refuses (its tenant's rule) comes back in the same shape.
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(agent_yaml(served.model.url).replace("{name: m}", "{name: m, namespace: x}"))
    code, _, err = await agentrt("apply", "-f", str(foreign), server=served, key=key)
    assert code == 2 and "field metadata.namespace" in err and "  fix:" in err
    async with Store.from_url(served.store_url) as store:
        assert await store.get_resource("Model", "x", "m") is None


LEAD = """\
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: child}
spec: {model: m, instructions: You research., tools: [add]}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: researcher}
spec: {kind: agent, agent: {agent: child}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: lead}
spec: {model: m, tools: [researcher]}
"""


async def test_a_child_runs_steps_are_in_the_live_trace_as_locally(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    served.model.set_rules(
        rules({"tool_calls": [call("researcher", input="find the sum")]},
              {"content": "parent got: {last_tool_result}"}, match="^plan")
        + rules({"tool_calls": [call("add", a=20, b=22)]},
                {"content": "child says {last_tool_result}"}, match="^find")
    )  # fmt: skip
    files = tmp_path / "lead.yaml"
    files.write_text(agent_yaml(served.model.url, tools=True) + LEAD)
    assert (await agentrt("apply", "-f", str(files), server=served, key=admin.key))[0] == 0
    remote = await agentrt("run", "lead", "plan it", server=served, key=admin.key)
    local = await agentrt("run", "lead", "plan it", "-n", tenant, store=served.store_url)
    assert remote[0] == local[0] == 0 and remote[2] == local[2] == ""
    assert "output: parent got: child says 42" in remote[1]
    started = [line for line in remote[1].splitlines() if line.endswith(" started")]
    assert len(started) == 2  # the lead's run, then its child's
    assert "act   add(a=20, b=22) → 42" in remote[1]
    assert shape(remote[1]) == shape(local[1])


async def test_apply_of_a_query_runs_it_with_its_trace_as_locally(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": ANSWER}))
    query = (
        "---\napiVersion: agentrt.dev/v1\nkind: Query\n"
        f"metadata: {{name: ask, namespace: {tenant}}}\nspec: {{target: bot, input: '2+3?'}}\n"
    )
    files = tmp_path / "ask.yaml"
    # In the tenant's namespace, which is where the command over the store applies it too.
    scoped = re.sub(r"metadata: \{name: (\w+)\}", rf"metadata: {{name: \1, namespace: {tenant}}}",
                    agent_yaml(served.model.url, tools=True))  # fmt: skip
    files.write_text(scoped + query)
    remote = await agentrt("apply", "-f", str(files), server=served, key=admin.key)
    local = await agentrt("apply", "-f", str(files), store=served.store_url)
    assert remote[0] == local[0] == 0 and remote[2] == local[2] == "", (remote, local)
    assert "act   add(a=2, b=3) → 5" in remote[1] and remote[1].endswith(f"output: {ANSWER}\n")
    generations = re.compile(r"generation \d+")
    assert generations.sub("G", shape(remote[1])) == generations.sub("G", shape(local[1]))


PAYER = """\
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: pay}
spec: {kind: python, callable: 'tests.sample_tools:charge', approval: {required: true}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: payer}
spec: {model: m, tools: [pay]}
"""


async def test_a_run_that_waits_for_a_person_ends_the_command_as_locally(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    served.model.set_rules(rules({"tool_calls": [call("pay", amount=500)]}, {"content": "paid"}))
    files = tmp_path / "payer.yaml"
    files.write_text(agent_yaml(served.model.url) + PAYER)
    assert (await agentrt("apply", "-f", str(files), server=served, key=admin.key))[0] == 0
    remote = await agentrt("run", "payer", "pay it", server=served, key=admin.key)
    local = await agentrt("run", "payer", "pay it", "-n", tenant, store=served.store_url)
    assert remote[0] == local[0] == 3, (remote, local)  # the run waits for a person
    lines = remote[1].splitlines()
    assert re.fullmatch(r"run_\w+ waiting_approval: step 2 \(pay\) needs approval;.*", lines[2])
    assert lines[3].startswith("waiting_approval in 2 steps")
    assert shape(remote[1]) == shape(local[1])
    run_id = remote[1].split()[0]
    shown = await agentrt("runs", "show", run_id, server=served, key=admin.key)
    assert shown[0] == 0 and "waiting for approval: pay(amount=500)" in shown[1]


async def test_a_key_used_before_reports_its_run_without_its_trace_as_locally(
    served: Served, admin: Api, tenant: str, tmp_path: Path
) -> None:
    served.model.set_rules(rules({"content": ANSWER}))
    files = tmp_path / "bot.yaml"
    files.write_text(agent_yaml(served.model.url))
    assert (await agentrt("apply", "-f", str(files), server=served, key=admin.key))[0] == 0
    once = ("run", "bot", "hi", "--idempotency-key", "k-1")
    first = await agentrt(*once, server=served, key=admin.key)
    assert first[0] == 0 and first[1].splitlines()[0].endswith(" started")
    again = await agentrt(*once, server=served, key=admin.key)
    local = await agentrt(*once, "-n", tenant, store=served.store_url)
    assert again == local  # the same run, reported, not traced again
    assert again[0] == 0 and again[1].splitlines() == first[1].splitlines()[-2:]
