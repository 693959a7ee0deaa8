"""An Agent's ``routing``: rules (input length, tags, a classifier hook registered on the
Runtime) pick each model step's Model; with tiers and a check, an answer that fails
the check goes to the next tier as a new step. Over real HTTP, one test server per
Model; every decision is on the steps' events, and replay and fork read it back:
no model request, no hook called again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.cli.render import Style, render_run_tree
from agentrt.engine import events as ev
from agentrt.errors import SpecError
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import check_references, load_text
from agentrt.state.base import Store
from tests.conftest import call, resources, rules


@pytest.fixture
async def large() -> AsyncIterator[ModelTestServer]:
    """The dear Model's own server."""
    async with ModelTestServer(rules({"content": "from large"})) as server:
        yield server


def _resources(
    small: ModelTestServer,
    large: ModelTestServer,
    routing: dict[str, Any],
    tools: list[str] | None = None,
) -> Any:
    """Model ``m`` (cheap, the Agent's ``model``), Model ``large`` and Agent ``bot``."""
    return resources(
        small.url,
        tools=tools,
        model={"pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
        extra_models={
            "large": {
                "provider": "openai",
                "base_url": large.url,
                "max_retries": 0,
                "pricing": {"input_per_mtok": 10.0, "output_per_mtok": 20.0},
            }
        },
        agent={"routing": routing},
    )


def _of(events: list[Any], kind: str, step: int) -> dict[str, Any]:
    return next(e.data for e in events if e.type == kind and e.step == step)


RULES = {
    "rules": [
        {"when": {"tags": ["legal"]}, "model": "large"},
        {"when": {"min_input_chars": 40}, "model": "large"},
        {"when": {"classifier": "difficulty", "label": "hard"}, "model": "large"},
    ]
}


async def test_rules_pick_each_steps_model_and_replay_asks_nobody(
    store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "from small"}))
    asked: list[Any] = []

    def difficulty(query: Any) -> str:
        asked.append(query)
        return "hard" if "hard" in query.input else "easy"

    async with Runtime(store) as rt:
        rt.register_hook("difficulty", difficulty)
        await rt.apply(_resources(model_server, large, RULES))
        plain = await rt.run("bot", "hi")
        tagged = await rt.run("bot", "hi", tags=["legal", "urgent"])
        long = await rt.run("bot", "x" * 40)
        hard = await rt.run("bot", "a hard one")
        runs = (plain, tagged, long, hard)
        assert [r.output for r in runs] == ["from small", "from large", "from large", "from large"]
        assert (len(model_server.requests), len(large.requests)) == (1, 3)
        # The classifier was asked only where no earlier rule held: "hi" and "a hard one".
        assert [q.input for q in asked] == ["hi", "a hard one"]
        assert asked[1].agent == "bot" and asked[1].step == 1
        replayed = [await rt.replay(r.run_id) for r in runs]
    assert [r.output for r in replayed] == [r.output for r in runs]
    assert (len(model_server.requests), len(large.requests)) == (1, 3)  # replay asked nobody
    assert len(asked) == 2  # nor the classifier
    decided = [_of(await store.read_events(r.run_id), ev.MODEL_CALL, 1) for r in runs]
    assert [d["model"] for d in decided] == ["m", "large", "large", "large"]
    assert [d["routing"] for d in decided] == [
        {"model": "m", "by": "default"},
        {"model": "large", "by": "rule", "rule": 0},
        {"model": "large", "by": "rule", "rule": 1},
        {"model": "large", "by": "rule", "rule": 2, "label": "hard"},
    ]


ESCALATE = {
    "tiers": ["m", "large"],
    "check": {
        "json_schema": {
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"],
        }
    },
}


async def test_an_answer_failing_the_check_escalates_to_the_next_tier(
    any_store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "four, I think"}))
    large.set_rules(rules({"content": '{"answer": 4}'}))
    async with Runtime(any_store) as rt:
        await rt.apply(_resources(model_server, large, ESCALATE))
        result = await rt.run("bot", "2+2? answer in JSON")
        assert (result.status, result.output) == ("succeeded", '{"answer": 4}')
        assert (len(model_server.requests), len(large.requests)) == (1, 1)
        replayed = await rt.replay(result.run_id)
        assert replayed.output == result.output
        assert (len(model_server.requests), len(large.requests)) == (1, 1)
    # The large tier was asked what the small one was, without its failed answer.
    assert large.requests[0]["messages"] == model_server.requests[0]["messages"]
    events = await any_store.read_events(result.run_id)
    checked = _of(events, ev.MODEL_CHECKED, 1)
    assert (checked["model"], checked["passed"], checked["escalate_to"]) == ("m", False, "large")
    assert checked["why"].startswith("it is not JSON")
    assert _of(events, ev.MODEL_CALL, 2)["routing"] == {
        "model": "large",
        "by": "escalated",
        "from": {"step": 1, "model": "m", "why": checked["why"]},
    }
    assert _of(events, ev.MODEL_CHECKED, 2) == {"model": "large", "passed": True}
    # Both tiers' calls are the run's usage: the failed answer cost what it cost.
    small_cost = _of(events, ev.MODEL_RESULT, 1)["cost"]
    large_cost = _of(events, ev.MODEL_RESULT, 2)["cost"]
    assert small_cost > 0 and result.usage.cost_usd == pytest.approx(small_cost + large_cost)
    run = await any_store.get_run(result.run_id)
    assert run is not None
    tree = render_run_tree(run, events, Style())
    assert "├─ step 1  model m  " in tree and "│    routed: default: m" in tree
    assert "│    check: failed: it is not JSON (" in tree and ") → large" in tree
    assert "├─ step 2  model large  " in tree
    assert "│    routed: escalated from step 1 (m): large" in tree


async def test_a_fork_after_a_failed_check_goes_on_at_the_recorded_tier(
    store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "no"}))
    large.set_rules(rules({"content": "YES"}))
    routing = {"tiers": ["m", "large"], "check": {"matches": "^YES"}}
    async with Runtime(store) as rt:
        await rt.apply(_resources(model_server, large, routing))
        first = await rt.run("bot", "say yes")
        forked = await rt.fork(first.run_id, from_step=1)
        again = await rt.wait(forked.id)
    assert (first.output, again.output) == ("YES", "YES")
    # The fork took step 1's verdict from the log: the small tier was not asked again.
    assert (len(model_server.requests), len(large.requests)) == (1, 2)
    routed = _of(await store.read_events(forked.id), ev.MODEL_CALL, 2)["routing"]
    assert (routed["by"], routed["from"]["step"]) == ("escalated", 1)


async def test_the_last_tiers_failed_answer_fails_the_run_or_is_accepted(
    store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "short"}))
    large.set_rules(rules({"content": "still short"}))
    seen: list[str] = []

    def long_enough(answer: str) -> str | None:
        seen.append(answer)
        return None if len(answer) > 20 else f"{len(answer)} characters, 21 at least"

    check = {"hook": "long_enough"}
    async with Runtime(store) as rt:
        rt.register_hook("long_enough", long_enough)
        await rt.apply(_resources(model_server, large, {"tiers": ["m", "large"], "check": check}))
        failed = await rt.run("bot", "write")
        accepting = {"tiers": ["m", "large"], "check": {**check, "on_last_failure": "accept"}}
        await rt.apply(_resources(model_server, large, accepting))
        accepted = await rt.run("bot", "write")
        assert await rt.replay(failed.run_id) is not None
    assert seen == ["short", "still short"] * 2  # replay called no check hook
    assert (failed.status, accepted.status, accepted.output) == (
        "failed",
        "succeeded",
        "still short",
    )
    assert failed.reason is not None and "check hook 'long_enough': 11 characters" in failed.reason
    events = await store.read_events(failed.run_id)
    finished = next(e.data for e in events if e.type == ev.RUN_FINISHED)
    assert finished["error"]["code"] == "check_failed"
    last = _of(await store.read_events(accepted.run_id), ev.MODEL_CHECKED, 2)
    assert (last["passed"], last["accepted"], "escalate_to" in last) == (False, True, False)


async def test_a_hook_nobody_registered_fails_the_run_before_any_call(
    store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    async with Runtime(store) as rt:
        rt.register_hook("other", lambda query: None)
        await rt.apply(_resources(model_server, large, RULES))
        result = await rt.run("bot", "hi")
    assert result.status == "failed" and result.reason is not None
    assert "routing.rules[2].when.classifier: 'difficulty'" in result.reason
    assert "registered: other" in result.reason and "Runtime.register_hook" in result.reason
    assert (len(model_server.requests), len(large.requests)) == (0, 0)


AGENT = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {{name: m}}
spec: {{provider: scripted}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {{name: bot}}
spec:
  model: m
  routing: {routing}
"""


@pytest.mark.parametrize(
    ("routing", "field", "said"),
    [
        ("{tiers: [m]}", "spec.routing.check", "`tiers` and `check` go together"),
        ("{}", "spec.routing", "routing needs `rules`"),
        (
            "{rules: [{when: {classifier: kind}, model: m}]}",
            "spec.routing.rules[0].when.label",
            "`classifier` and `label` go together",
        ),
        ("{tiers: [m], check: {}}", "spec.routing.check", "a check checks something"),
        (
            "{tiers: [m], check: {json_schema: {type: 12}}}",
            "spec.routing.check.json_schema.type",
            "not a valid JSON Schema",
        ),
    ],
)
def test_a_routing_spec_that_cannot_work_is_an_error_naming_its_field(
    routing: str, field: str, said: str
) -> None:
    with pytest.raises(SpecError) as caught:
        load_text(AGENT.format(routing=routing), "agents.yaml")
    issue = caught.value.issues[0]
    assert (issue.file, issue.field_path) == ("agents.yaml", field)
    assert said in issue.message and issue.fix != "change the value as the message says"


def test_a_routed_model_that_does_not_exist_is_an_error_naming_the_rule() -> None:
    loaded = load_text(
        AGENT.format(routing="{rules: [{model: mm}], tiers: [m, big], check: {matches: x}}"),
        "agents.yaml",
    )
    with pytest.raises(SpecError) as caught:
        check_references(loaded)
    fields = [(i.field_path, i.fix) for i in caught.value.issues]
    assert fields[0] == ("spec.routing.rules[0].model", "did you mean 'm'?")
    assert fields[1][0] == "spec.routing.tiers[1]"


async def test_a_run_taken_up_again_reads_its_recorded_steps_decisions(
    store: Store, model_server: ModelTestServer, large: ModelTestServer, effects: Path
) -> None:
    model_server.set_rules(rules({"content": "unused"}, {"content": "from small"}))
    large.set_rules(rules({"tool_calls": [call("charge_approved", amount="900")]}))
    labels = iter(["hard", "easy"])  # the classifier says otherwise the second time
    asked: list[int] = []

    def difficulty(query: Any) -> str:
        asked.append(query.step)
        return next(labels)

    async with Runtime(store) as rt:
        rt.register_hook("difficulty", difficulty)
        await rt.apply(_resources(model_server, large, RULES, tools=["charge_approved"]))
        waiting = await rt.run("bot", "charge it")
        assert waiting.status == "waiting_approval"
        done = await rt.approve(waiting.run_id, 2)  # the run is taken up again from its log
    assert (done.status, done.output) == ("succeeded", "from small")
    assert effects.read_text().count("900") == 1
    # Step 1 was decided once, when it began; step 3 (after the tool) is a new step.
    assert asked == [1, 3]
    assert (len(large.requests), len(model_server.requests)) == (1, 1)
    intents = [e for e in await store.read_events(done.run_id) if e.type == ev.MODEL_CALL]
    assert [(e.step, e.data["routing"]["model"]) for e in intents] == [(1, "large"), (3, "m")]


async def test_admission_prices_the_cheapest_model_a_routed_first_step_may_call(
    store: Store, model_server: ModelTestServer, large: ModelTestServer
) -> None:
    """The Agent's ``model`` is the dear one, but its tiers start with the cheap one: a
    Budget with room for a cheap first step admits the query; one with room for
    none refuses it."""
    from agentrt.errors import BudgetExhausted
    from agentrt.spec import parse_resource

    def budget(usd: float) -> Any:
        return parse_resource(
            {"apiVersion": "agentrt.dev/v1", "kind": "Budget", "metadata": {"name": "monthly"},
             "spec": {"period": "month", "max_cost_usd": usd}}
        )  # fmt: skip

    routed = resources(
        model_server.url,
        model={"pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
        extra_models={"large": {"provider": "openai", "base_url": large.url, "max_retries": 0,
                                "pricing": {"input_per_mtok": 10.0, "output_per_mtok": 20.0}}},
        agent={"model": "large", "routing": {"tiers": ["m", "large"], "check": {"matches": "."}}},
    )  # fmt: skip
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(routed)
        # Reading "hi" and the instructions costs about 3e-4 USD on large, 3e-6 on m.
        await rt.apply([budget(1e-5)])
        admitted = await rt.submit("bot", "hi", start=False)
        await rt.apply([budget(1e-8)])
        with pytest.raises(BudgetExhausted, match="query refused"):
            await rt.submit("bot", "hi", start=False)
    assert admitted.status == "queued"
