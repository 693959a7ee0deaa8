"""Resource files: valid ones load; each kind of mistake gives file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrt.errors import SpecError
from agentrt.spec import Agent, Model, Tool, check_references, load_paths, load_text

GOOD = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m, namespace: team-a}
spec: {provider: scripted, script: [{steps: [{content: hi}]}]}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: add, namespace: team-a}
spec: {kind: python, callable: "tests.sample_tools:add", idempotent: true}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot, namespace: team-a}
spec:
  model: m
  tools: [add]
  loop: {max_steps: 5, retry: {max_attempts: 2}, stop: {on_tools: [add]}}
  budgets: {max_tokens: 100, deadline_s: 30}
"""


def _error(text: str, file: str = "bad.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        check_references(load_text(text, file))
    return info.value


def _one_screen(err: SpecError) -> str:
    rendered = err.render()
    assert len(rendered.splitlines()) <= 24 and "Traceback" not in rendered
    return rendered


def test_multi_document_file_loads_all_kinds() -> None:
    loaded = load_text(GOOD, "good.yaml")
    check_references(loaded)
    kinds = [type(item.resource) for item in loaded]
    assert kinds == [Model, Tool, Agent]
    agent = loaded[2].resource
    assert isinstance(agent, Agent)
    assert agent.namespace == "team-a" and agent.spec.loop.max_steps == 5
    assert agent.spec.loop.stop.on_tools == ["add"] and agent.spec.budgets.max_tokens == 100
    assert loaded[2].line == 11


def test_bad_yaml_names_file_line_and_fix() -> None:
    err = _error("apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata:\n  name: a\n spec: x: y\n")
    text = _one_screen(err)
    assert "bad.yaml:5" in text and "invalid YAML" in text and "fix:" in text


def test_unknown_kind_suggests_the_right_one() -> None:
    text = _one_screen(
        _error("apiVersion: agentrt.dev/v1\nkind: Agnet\nmetadata: {name: a}\nspec: {}\n")
    )
    assert "bad.yaml:2" in text and "unknown kind 'Agnet'" in text
    assert "did you mean `kind: Agent`?" in text


def test_missing_field_names_the_path() -> None:
    err = _error(
        "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n  instructions: hi\n"
    )
    issue = err.issues[0]
    assert (issue.file, issue.resource, issue.field_path) == ("bad.yaml", "Agent/a", "spec.model")
    assert "missing required field `model`" in issue.message
    assert "add `model: ...`" in issue.fix and "Model" in issue.fix


def test_wrong_type_says_what_was_expected() -> None:
    err = _error(
        "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec:\n  model: m\n  loop:\n    max_steps: lots\n"
    )
    issue = err.issues[0]
    assert issue.field_path == "spec.loop.max_steps" and issue.line == 7
    assert issue.message == "expected an integer, got a string 'lots'"


def test_misspelt_field_suggests_the_real_one() -> None:
    err = _error(
        "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n  model: m\n  tool: [x]\n"
    )
    issue = err.issues[0]
    assert issue.field_path == "spec.tool" and issue.fix == "did you mean `tools`?"


def test_dangling_reference_names_what_is_missing() -> None:
    err = _error(GOOD.replace("tools: [add]", "tools: [add, search]"))
    issue = err.issues[0]
    assert issue.resource == "Agent/bot" and issue.field_path == "spec.tools[1]"
    assert "Tool 'search' not found in namespace 'team-a'" in issue.message
    assert "define a Tool named 'search'" in issue.fix


def test_a_missing_agent_is_named_with_its_article() -> None:
    query = (
        "---\napiVersion: agentrt.dev/v1\nkind: Query\nmetadata: {name: q, namespace: team-a}\n"
        "spec: {target: helper, input: hi}\n"
    )
    (issue,) = _error(GOOD + query).issues
    assert issue.fix.startswith("define an Agent named 'helper' in namespace 'team-a'")


def test_reference_typo_gets_a_suggestion() -> None:
    err = _error(GOOD.replace("model: m\n", "model: gpt4\n").replace("{name: m,", "{name: gpt-4,"))
    assert "did you mean 'gpt-4'?" in err.issues[0].fix


def test_provider_specific_rule() -> None:
    err = _error(
        "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\nspec: {provider: openai}\n"
    )
    assert err.issues[0].field_path == "spec" and "base_url" in err.issues[0].message


def test_bad_api_version_and_name() -> None:
    err = _error("apiVersion: v1\nkind: Tool\nmetadata: {name: Bad_Name}\nspec: {}\n")
    assert err.issues[0].field_path == "apiVersion" and "agentrt.dev/v1" in err.issues[0].fix
    err = _error(
        "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: Bad_Name}\n"
        "spec: {kind: python, callable: 'a:b'}\n"
    )
    assert err.issues[0].field_path == "metadata.name" and "lower-case" in err.issues[0].fix


def test_all_problems_of_a_directory_in_one_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: agentrt.dev/v1\nkind: Nope\nmetadata: {name: a}\n"
    )
    (tmp_path / "b.yml").write_text(
        "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: b}\nspec: {kind: python}\n"
    )
    with pytest.raises(SpecError) as info:
        load_paths([tmp_path])
    files = {Path(issue.file).name for issue in info.value.issues}
    assert files == {"a.yaml", "b.yml"}


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_paths([tmp_path / "absent.yaml"])


def test_memory_policy_mistakes_name_the_field() -> None:
    summary = "  memory: {session: {policy: summary, summary_model: smal}}\n"
    err = _error(GOOD + summary)
    issue = err.issues[0]
    assert issue.field_path == "spec.memory.session.summary_model"
    assert "Model 'smal' not found" in issue.message
    err = _error(GOOD + "  memory: {session: {policy: windowed}}\n")
    assert err.issues[0].field_path == "spec.memory.session.policy"
    assert err.issues[0].fix == "use one of: 'full', 'window' or 'summary'"


def test_rate_limit_mistakes_name_the_field_and_the_fix() -> None:
    head = "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\nspec:\n  provider: scripted\n"
    empty = _error(head + "  rate_limits: {}\n")
    assert empty.issues[0].field_path == "spec.rate_limits"
    assert "needs `requests_per_minute` or `tokens_per_minute`" in empty.issues[0].message
    zero = _error(head + "  rate_limits: {requests_per_minute: 0}\n")
    assert zero.issues[0].field_path == "spec.rate_limits.requests_per_minute"
    assert zero.issues[0].line == 6
    typo = _error(head + "  rate_limits: {request_per_minute: 60}\n")
    assert typo.issues[0].fix == "did you mean `requests_per_minute`?"
    for err in (empty, zero, typo):
        _one_screen(err)
    [loaded] = load_text(head + "  rate_limits: {tokens_per_minute: 90000}\n", "ok.yaml")
    model = loaded.resource
    assert isinstance(model, Model) and model.spec.rate_limits is not None
    assert model.spec.rate_limits.tokens_per_minute == 90000
    assert model.spec.rate_limits.requests_per_minute is None
