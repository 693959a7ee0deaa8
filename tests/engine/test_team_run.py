"""Team runs end to end: real Runtime and SQLite store, agents on the HTTP test model."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.engine.team_state import StateWrite, fold_state
from agentrt.errors import NondeterminismError, UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.spec.loader import parse_resource
from agentrt.spec.resources import Resource, ScriptedRule, StateKey
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules


def agents(url: str, *names: str) -> list[Resource]:
    """Model ``m`` on the test server, and one Agent per name on it."""
    out = [r for r in resources(url) if r.kind == "Model"]
    for name in names:
        doc = {"kind": "Agent", "metadata": {"name": name}, "spec": {"model": "m"}}
        out.append(parse_resource({"apiVersion": "agentrt.dev/v1", **doc}))
    return out


def team(name: str, spec: dict[str, Any]) -> Resource:
    doc = {"kind": "Team", "metadata": {"name": name}, "spec": spec}
    return parse_resource({"apiVersion": "agentrt.dev/v1", **doc})


def script(*pairs: tuple[str, str]) -> list[ScriptedRule]:
    """Rules: the first whose regex is found in the input answers with its text."""
    return [ScriptedRule.model_validate({"match": m, "steps": [{"content": c}]}) for m, c in pairs]


async def child_runs(store: SqliteStore, parent: str) -> list[Any]:
    return [r for r in await store.list_runs(limit=1000) if r.parent_run == parent]


async def test_a_fan_out_of_ten_runs_concurrently(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script(("^split", "the plan"), (".", "done: {input}")))
    workers = [{"name": f"w{i}", "agent": "worker", "after": ["plan"],
                "input": f"part {i} of {{state.plan}}", "output": "parts"} for i in range(10)]  # fmt: skip
    spec = {
        "state": {"parts": {"reducer": "append"}},
        "concurrency": 10,
        "nodes": [
            {"name": "plan", "agent": "planner"},
            *workers,
            {
                "name": "join",
                "agent": "worker",
                "after": [w["name"] for w in workers],
                "input": "{state.parts}",
            },
        ],
    }
    model_server.inject_delay(0.0, count=1)  # the planner answers at once
    model_server.inject_delay(0.3, count=10)  # each worker's model call takes a while
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "planner", "worker"), team("fan", spec)])
        result = await rt.run("fan", "split the work")
    assert result.status == "succeeded", result.reason
    # The join saw every part, in node order whatever order they ended in.
    expected = "\n\n".join(f"done: part {i} of the plan" for i in range(10))
    assert result.output == f"done: {expected}"
    # The team run's usage adds up its nodes' child runs: plan, ten workers, join.
    assert result.usage.model_calls == 12
    intervals = []
    for child in await child_runs(store, result.run_id):
        events = await store.read_events(child.id)
        if events[0].data["input"].startswith("part "):
            start = next(e.ts for e in events if e.type == ev.MODEL_CALL)
            end = next(e.ts for e in events if e.type == ev.MODEL_RESULT)
            intervals.append((start, end))
    assert len(intervals) == 10
    # All ten model calls were in flight at once: each began before any ended.
    assert max(s for s, _ in intervals) < min(e for _, e in intervals)


RESEARCH = {
    "strategy": {
        "kind": "planner-workers-evaluator",
        "planner": "planner",
        "workers": ["worker", "worker", "worker"],
        "evaluator": "critic",
        "max_rounds": 3,
    },
    "concurrency": 3,
}


async def test_planner_workers_evaluator_rejects_once_then_accepts(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        script(
            (r"found\(PLAN v2\)", "ACCEPT"),
            (r"found\(PLAN v1\)", "REJECT: add sources"),
            ("REJECT", "PLAN v2"),
            (r"^PLAN v\d$", "found({input})"),
            ("^research", "PLAN v1"),
        )
    )
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "planner", "worker", "critic"),
                        team("research", RESEARCH)])  # fmt: skip
        result = await rt.run("research", "research: tides")
    assert result.status == "succeeded", result.reason
    assert result.output == "\n\n".join(["found(PLAN v2)"] * 3)  # the accepted round's only
    events = await store.read_events(result.run_id)
    finished = [(e.data["node"], e.data["round"]) for e in events if e.type == ev.NODE_FINISHED]
    assert finished.count(("evaluate", 1)) == 1 and finished.count(("evaluate", 2)) == 1
    assert ("plan", 2) in finished and ("plan", 3) not in finished
    fired = [e.data["loops"] for e in events if e.type == ev.NODE_FINISHED and e.data.get("loops")]
    assert fired == [[0]]  # one rejection, one more round
    assert len(await child_runs(store, result.run_id)) == 10  # 5 nodes, 2 rounds


async def test_a_loop_that_never_ends_stops_at_its_bound(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(
        script(("found", "REJECT: still not enough"), ("^PLAN", "found it"), (".", "PLAN"))
    )
    spec = {**RESEARCH, "strategy": {**RESEARCH["strategy"], "max_rounds": 2}}
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "planner", "worker", "critic"),
                        team("research", spec)])  # fmt: skip
        result = await rt.run("research", "research: tides")
    assert result.status == "failed"
    assert result.reason is not None
    assert "used all its 2 rounds (max_rounds)" in result.reason
    assert "'feedback' still holds" in result.reason
    events = await store.read_events(result.run_id)
    rounds = {e.data["round"] for e in events if e.type == ev.NODE_FINISHED}
    assert rounds == {1, 2}


async def test_a_failing_node_fails_the_team_with_its_path(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "ok")))
    spec = {"nodes": [{"name": "a", "agent": "worker"},
                      {"name": "b", "agent": "broken", "after": ["a"],
                       "retry": {"max_attempts": 2, "initial_backoff_s": 0}}]}  # fmt: skip
    down = {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    broken = {"kind": "Agent", "metadata": {"name": "broken"},
              "spec": {"model": "down", "loop": {"retry": {"max_attempts": 1}}}}  # fmt: skip
    extra = [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in (
        {"kind": "Model", "metadata": {"name": "down"}, "spec": down}, broken)]  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), *extra, team("pair", spec)])
        result = await rt.run("pair", "go")
    assert result.status == "failed"
    assert result.reason is not None
    assert "node 'b' (Agent broken, round 1) ended failed after 2 attempts" in result.reason
    assert "path: pair → a → b" in result.reason


async def test_a_router_runs_only_the_chosen_member(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "{input} handled")))
    spec = {"strategy": {"kind": "router", "members": ["billing", "support"],
                         "rules": [{"match": "(?i)invoice", "member": "billing"}],
                         "model": None}}  # fmt: skip
    spec["strategy"]["rules"].append({"match": ".", "member": "support"})
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "billing", "support"), team("desk", spec)])
        result = await rt.run("desk", "my invoice is wrong")
    assert result.status == "succeeded", result.reason
    assert result.output == "my invoice is wrong handled"
    children = await child_runs(store, result.run_id)
    assert [c.agent for c in children] == ["billing"]


def test_parallel_writes_fold_the_same_in_any_order() -> None:
    keys = {"notes": StateKey(reducer="append"), "best": StateKey(reducer="last"),
            "facts": StateKey(reducer="merge")}  # fmt: skip
    writes = [StateWrite("notes", f"note {i}", 1, i) for i in range(10)]
    writes += [StateWrite("best", f"best {i}", 1, i) for i in range(10)]
    writes += [StateWrite("facts", {"k": i, f"k{i}": i}, 1, i) for i in range(10)]
    writes += [StateWrite("notes", "round 2", 2, 0)]
    first = fold_state(keys, writes)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = list(writes)
        rng.shuffle(shuffled)
        assert fold_state(keys, shuffled) == first
    assert first["notes"] == [f"note {i}" for i in range(10)] + ["round 2"]
    assert first["best"] == "best 9"
    assert first["facts"]["k"] == 9 and len(first["facts"]) == 11


def test_a_latest_rounds_key_keeps_each_writers_latest_round() -> None:
    keys = {"drafts": StateKey(reducer="append", rounds="latest")}
    writes = [StateWrite("drafts", f"r1 w{i}", 1, i) for i in range(3)]
    writes += [StateWrite("drafts", f"r2 w{i}", 2, i) for i in (0, 2)]  # w1 is not run again
    writes += [StateWrite("drafts", f"r2 map {j}", 2, 5, j) for j in range(2)]
    rng = random.Random(3)
    for _ in range(10):
        rng.shuffle(writes)
        folded = fold_state(keys, writes)["drafts"]
        assert folded == ["r1 w1", "r2 w0", "r2 w2", "r2 map 0", "r2 map 1"]  # round, node, item
    assert fold_state({"drafts": StateKey(reducer="append")}, writes)["drafts"][:3] == [
        "r1 w0",
        "r1 w1",
        "r1 w2",
    ]


PARALLEL_WRITES = {
    "state": {"parts": {"reducer": "append"}, "latest": {"reducer": "last"},
              "seen": {"reducer": "merge"}},
    "concurrency": 6,
    "entry": [f"w{i}" for i in range(6)],
    "nodes": [
        {"name": f"w{i}", "agent": "worker", "input": f"part {i}",
         "output": ["parts", "latest", "seen"][i % 3]}
        for i in range(6)
    ] + [{"name": "join", "agent": "worker", "after": [f"w{i}" for i in range(6)],
          "input": "{state.parts} | {state.latest} | {state.seen}"}],
    "output": "parts",
}  # fmt: skip


async def test_parallel_writes_merge_identically_across_20_runs_and_after_replay(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "done {input}")))
    rng = random.Random(20)
    finals: list[dict[str, Any]] = []
    orders: set[tuple[str, ...]] = set()
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), team("writers", PARALLEL_WRITES)])
        for _ in range(20):
            for _ in range(6):  # the workers end in another order each time
                model_server.inject_delay(rng.uniform(0.0, 0.03))
            result = await rt.run("writers", "go")
            assert result.status == "succeeded", result.reason
            events = await store.read_events(result.run_id)
            ends = [e.data["node"] for e in events if e.type == ev.NODE_FINISHED]
            orders.add(tuple(ends))
            finals.append({"state": events[-1].data["state"], "output": result.output})
            replayed = await rt.replay(result.run_id)  # every child run is replayed too
            assert (replayed.status, replayed.output) == ("succeeded", result.output)
    assert len(orders) > 1, "the workers ended in different orders"
    assert all(f == finals[0] for f in finals)
    state = finals[0]["state"]
    assert state["parts"] == ["done part 0", "done part 3"]
    assert state["latest"] == "done part 4"
    assert state["seen"] == {"done part 2": "done part 2", "done part 5": "done part 5"}
    assert ends[-1] == "join"


async def test_replay_of_a_team_run_finds_a_changed_log(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "done {input}")))
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), team("writers", PARALLEL_WRITES)])
        result = await rt.run("writers", "go")
        exported = await rt.export_run(result.run_id)
        for event in exported["events"]:
            if event["type"] == ev.NODE_FINISHED and event["data"]["node"] == "w3":
                event["data"]["output"] = "a different part"
        copy = await rt.import_run(exported)
        with pytest.raises(NondeterminismError, match=r"child run .* \(node 'w3'\)"):
            await rt.replay(copy.id)


async def test_replay_of_a_failed_loop_ends_as_recorded(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "REJECT")))
    spec = {"strategy": {"kind": "planner-workers-evaluator", "planner": "a",
                         "workers": ["a", "a"], "evaluator": "a", "max_rounds": 2}}  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "a"), team("stuck", spec)])
        result = await rt.run("stuck", "go")
        assert result.status == "failed"
        replayed = await rt.replay(result.run_id)
    assert (replayed.status, replayed.reason) == ("failed", result.reason)


def router_model() -> Resource:
    """An in-process scripted Model that names a member: plainly, or inside a sentence."""
    script = [{"match": "(?i)invoice", "steps": [{"content": "billing"}]},
              {"match": "(?i)weather", "steps": [{"content": "No idea."}]},
              {"match": ".", "steps": [{"content": "I think support should take it."}]}]  # fmt: skip
    doc = {"kind": "Model", "metadata": {"name": "chooser"},
           "spec": {"provider": "scripted", "script": script}}  # fmt: skip
    return parse_resource({"apiVersion": "agentrt.dev/v1", **doc})


async def test_a_router_asks_its_model_which_member_answers(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "{input} handled")))
    spec = {"strategy": {"kind": "router", "members": ["billing", "support"], "model": "chooser"}}
    async with Runtime(store) as rt:
        await rt.apply(
            [*agents(model_server.url, "billing", "support"), router_model(), team("desk", spec)]
        )
        invoice = await rt.run("desk", "my invoice is wrong")
        login = await rt.run("desk", "I cannot log in")
        lost = await rt.run("desk", "what is the weather")
        replayed = await rt.replay(login.run_id)
        lost_again = await rt.replay(lost.run_id)
    assert (invoice.output, login.output) == (
        "my invoice is wrong handled",
        "I cannot log in handled",
    )
    assert [c.agent for c in await child_runs(store, invoice.run_id)] == ["billing"]
    assert [c.agent for c in await child_runs(store, login.run_id)] == ["support"]
    routed = next(
        e.data for e in await store.read_events(login.run_id)
        if e.type == ev.NODE_FINISHED and e.data["node"] == "route"
    )  # fmt: skip
    assert (routed["output"], routed["reply"]) == ("support", "I think support should take it.")
    # The team's usage is its route model's call plus its member's run.
    assert login.usage.model_calls == 2 and login.usage.input_tokens > 0
    assert (replayed.status, replayed.output) == ("succeeded", login.output)
    assert lost.status == "failed"
    assert "model 'chooser' answered 'No idea.', which names none of billing, support" in (
        lost.reason or ""
    )
    assert (lost_again.status, lost_again.reason) == ("failed", lost.reason)


async def wait_for(store: SqliteStore, run_id: str, type_: str, count: int) -> None:
    for _ in range(500):
        events = await store.read_events(run_id)
        if sum(1 for e in events if e.type == type_) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{run_id} never recorded {count} {type_} events")


SLOW_TRIO = {"entry": ["a", "b", "c"], "concurrency": 3,
             "nodes": [{"name": n, "agent": "worker", "output": "parts"} for n in "abc"],
             "state": {"parts": {"reducer": "append"}}}  # fmt: skip


async def test_cancelling_a_team_run_cancels_its_running_nodes(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "done")))
    model_server.inject_delay(30.0, count=3)  # the workers' model calls would take a while
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), team("trio", SLOW_TRIO)])
        run = await rt.submit("trio", "go")
        await wait_for(store, run.id, ev.NODE_STARTED, 3)
        cancelled = await rt.cancel(run.id)
        children = await child_runs(store, run.id)
    assert cancelled.status == "cancelled"
    assert sorted(c.status for c in children) == ["cancelled"] * 3


@pytest.mark.parametrize("deadline_s", [0.5, 0.0001], ids=["in-flight", "passed-at-start"])
async def test_a_team_deadline_stops_its_running_nodes(
    store: SqliteStore, model_server: ModelTestServer, deadline_s: float
) -> None:
    # A deadline already passed when the team starts (a loaded worker took it up
    # late) stops its nodes as they start their first writes: the run still ends.
    model_server.set_rules(script((".", "done")))
    model_server.inject_delay(30.0, count=3)
    spec = {**SLOW_TRIO, "budgets": {"deadline_s": deadline_s}}
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), team("trio", spec)])
        result = await rt.run("trio", "go")
        children = await child_runs(store, result.run_id)
    assert result.status == "timed_out"
    assert all(c.status == "cancelled" for c in children)  # none left running
    if deadline_s >= 0.5:
        assert len(children) == 3


async def test_tool_nodes_call_their_tool_once_with_the_nodes_input(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(script(("^write", "report: {input}"), (".", "the plan")))
    spec = {
        "nodes": [
            {"name": "plan", "agent": "planner"},
            {"name": "sum", "tool": "add", "after": ["plan"], "input": '{"a": 2, "b": 40}'},
            {"name": "log", "tool": "record", "after": ["plan"],
             "input": '{"text": "{state.plan}"}'},
            {"name": "write", "agent": "planner", "after": ["sum", "log"],
             "input": "write {state.sum} / {state.log}"},
        ]
    }  # fmt: skip
    failing = {"nodes": [{"name": "boom", "tool": "fail", "input": "{input}"}]}
    async with Runtime(store) as rt:
        await rt.apply(
            [*resources(model_server.url, tools=["add", "record", "fail"]),
             *agents(model_server.url, "planner"), team("tooled", spec), team("broken", failing)]
        )  # fmt: skip
        result = await rt.run("tooled", "go")
        broken = await rt.run("broken", "go")
        replayed = await rt.replay(result.run_id)
    assert result.status == "succeeded", result.reason
    assert result.output == "report: write 42 / recorded the plan"
    assert [line.split("\t")[1:] for line in effects.read_text().splitlines()] == [
        ["record", "the plan"]
    ]
    # The node instance's key: the same on every attempt of it.
    assert effects.read_text().startswith(f"{result.run_id}/log/1/0\t")
    # Tool nodes are no child runs: the planner ran twice, nothing else did.
    assert [c.agent for c in await child_runs(store, result.run_id)] == ["planner", "planner"]
    assert (replayed.status, replayed.output) == ("succeeded", result.output)
    assert broken.status == "failed"
    assert "node 'boom' (Tool fail, round 1) ended failed" in (broken.reason or "")


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one moment."""
    return max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)


async def test_a_run_may_lower_its_teams_concurrency(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(script((".", "done")))
    spec = {"entry": [f"w{i}" for i in range(6)], "concurrency": 6,
            "nodes": [{"name": f"w{i}", "agent": "worker"} for i in range(6)]}  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply([*agents(model_server.url, "worker"), team("six", spec)])
        model_server.inject_delay(0.1, count=6)
        result = await rt.run("six", "go", concurrency=2)
        with pytest.raises(UsageError, match="concurrency limits a Team's nodes"):
            await rt.submit("worker", "go", concurrency=2)
    assert result.status == "succeeded", result.reason
    intervals = []
    for child in await child_runs(store, result.run_id):
        events = await store.read_events(child.id)
        start = next(e.ts for e in events if e.type == ev.MODEL_CALL)
        intervals.append((start, next(e.ts for e in events if e.type == ev.MODEL_RESULT)))
    assert len(intervals) == 6
    assert most_at_once(intervals) == 2


async def test_a_team_waits_while_a_node_waits_for_a_person(
    store: SqliteStore, model_server: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(
        rules({"tool_calls": [call("charge_approved", amount=250)]}, {"content": "paid"})
    )
    spec = {"nodes": [{"name": "pay", "agent": "bot"},
                      {"name": "after", "tool": "add", "after": ["pay"],
                       "input": '{"a": 1, "b": 1}'}]}  # fmt: skip
    async with Runtime(store) as rt:
        await rt.apply(
            [*resources(model_server.url, tools=["charge_approved", "add"]), team("till", spec)]
        )
        waiting = await rt.run("till", "charge it")
        assert waiting.status == "waiting", waiting.reason
        [child] = await child_runs(store, waiting.run_id)
        assert f"node 'pay' (round 1) waits for a person in child run {child.id}" in (
            waiting.reason or ""
        )
        assert not effects.exists(), "nothing was charged before the approval"
        await rt.approve(child.id, 2, approved=True, by="ana")
        done = await rt.wait(waiting.run_id)  # the child's end woke the team run
    assert (done.status, done.output) == ("succeeded", "2")
    assert len(await child_runs(store, waiting.run_id)) == 1  # the same child, found again
    assert effects.read_text().count("\tcharge\t250") == 1


async def test_a_team_run_its_routing_model_failed_replays_to_its_recorded_end(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    spec = {"strategy": {"kind": "router", "members": ["billing", "support"], "model": "chooser"}}
    async with ModelTestServer() as broken:
        broken.inject(500, count=100)
        chooser = {"kind": "Model", "metadata": {"name": "chooser"},
                   "spec": {"provider": "openai", "base_url": broken.url, "max_retries": 0}}  # fmt: skip
        async with Runtime(store) as rt:
            await rt.apply(
                [
                    *agents(model_server.url, "billing", "support"),
                    parse_resource({"apiVersion": "agentrt.dev/v1", **chooser}),
                    team("desk", spec),
                ]
            )
            failed = await rt.run("desk", "my invoice is wrong")
            asked = len(broken.requests)
            replayed = await rt.replay(failed.run_id)
    assert failed.status == "failed" and "routing model 'chooser' failed" in (failed.reason or "")
    assert (replayed.status, replayed.reason) == ("failed", failed.reason)
    assert len(broken.requests) == asked  # the replay asked no model
    routed = next(
        e.data for e in await store.read_events(failed.run_id)
        if e.type == ev.NODE_FINISHED and e.data["node"] == "route"
    )  # fmt: skip
    assert routed["status"] == "failed" and "HTTP 500" in routed["reason"]
    assert await child_runs(store, failed.run_id) == []
