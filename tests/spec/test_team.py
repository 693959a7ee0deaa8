"""The Team resource: strategies built into graphs, the graph checks, and `agentrt graph show`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentrt.cli.main import main
from agentrt.errors import SpecError
from agentrt.spec.crossrefs import check_references
from agentrt.spec.loader import load_text
from agentrt.spec.resources import Team
from agentrt.spec.team import team_graph, to_dot, to_mermaid

AGENTS = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m}
spec: {provider: scripted, script: [{match: ".", steps: [{content: ok}]}]}
""" + "".join(
    f"---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {{name: {name}}}\nspec: {{model: m}}\n"
    for name in ("planner", "searcher", "reader", "writer", "critic")
)


def team(body: str) -> str:
    """A Team document named ``t`` after the agents, with ``body`` as its spec."""
    spec = textwrap.indent(textwrap.dedent(body).strip(), "  ")
    return f"{AGENTS}---\napiVersion: agentrt.dev/v1\nkind: Team\nmetadata: {{name: t}}\nspec:\n{spec}\n"


def check(text: str) -> Team:
    """Load and check ``text`` as `agentrt apply` would; return its Team."""
    loaded = load_text(text, "team.yaml")
    check_references(loaded)
    (found,) = [item.resource for item in loaded if isinstance(item.resource, Team)]
    return found


def problems(text: str) -> str:
    with pytest.raises(SpecError) as info:
        check(text)
    return str(info.value)


RESEARCH = """
strategy:
  kind: planner-workers-evaluator
  planner: planner
  workers: [searcher, reader, writer]
  evaluator: critic
  max_rounds: 2
"""


def test_planner_workers_evaluator_builds_a_bounded_loop() -> None:
    graph = team_graph(check(team(RESEARCH)))
    names = [n.name for n in graph.nodes]
    assert names == ["plan", "work-1", "work-2", "work-3", "evaluate"]
    assert graph.node("evaluate").after == ["work-1", "work-2", "work-3"]
    assert {graph.node(f"work-{i}").agent for i in (1, 2, 3)} == {"searcher", "reader", "writer"}
    (loop,) = graph.loops
    assert (loop.after, loop.to, loop.max_rounds) == ("evaluate", "plan", 2)
    assert graph.state["findings"].reducer == "append"  # every worker's, in node order
    assert graph.state["findings"].rounds == "latest"  # of the round the evaluator judges
    assert graph.state["plan"].reducer == "last"  # undeclared: last writer by node order
    assert graph.entry == ("plan",)


@pytest.mark.parametrize(
    ("strategy", "nodes"),
    [
        ("{kind: sequential, members: [planner, writer, planner]}", ["planner-1", "writer", "planner-3"]),
        ("{kind: router, members: [searcher, writer], rules: [{match: code, member: writer}]}",
         ["route", "searcher", "writer"]),
        ("{kind: map, members: [reader], reduce: writer}", ["each", "reduce"]),
        ("{kind: round-robin, members: [writer, critic], max_rounds: 3}", ["writer", "critic"]),
        ("{kind: selector, members: [writer, critic], model: m}", ["route", "writer", "critic"]),
    ],
)  # fmt: skip
def test_every_strategy_builds_a_valid_graph(strategy: str, nodes: list[str]) -> None:
    graph = team_graph(check(team(f"strategy: {strategy}")))
    assert [n.name for n in graph.nodes] == nodes


EXPLICIT = """
state:
  notes: {reducer: append}
nodes:
  - {name: plan, agent: planner}
  - {name: search, agent: searcher, after: [plan], input: "{state.plan}", output: notes}
  - {name: read, agent: reader, after: [plan], input: "{state.plan}", output: notes}
  - name: write
    agent: writer
    after: [search, read]
    input: "{state.notes}"
    when: {key: plan, not_matches: "^NOTHING"}
  - {name: review, agent: critic, after: [write], input: "{state.write}"}
loops:
  - {after: review, to: write, when: {key: review, matches: REVISE}, max_rounds: 3}
"""


def test_an_explicit_graph_is_drawn_as_mermaid_and_dot() -> None:
    graph = team_graph(check(team(EXPLICIT)))
    mermaid = to_mermaid(graph)
    assert mermaid.startswith("flowchart TD")
    assert 'n0["plan<br/>agent: planner"]' in mermaid
    assert "start --> n0" in mermaid
    join = '-->|"when plan !~ ^NOTHING"| n3'
    assert f"n1 {join}" in mermaid and f"n2 {join}" in mermaid  # the join, with its condition
    assert "n0 --> n1" in mermaid
    assert 'n4 -.->|"while review ~ REVISE (max 3 rounds)"| n3' in mermaid
    dot = to_dot(graph)
    assert dot.startswith('digraph "t" {')
    assert '"search" -> "write" [label="when plan !~ ^NOTHING"];' in dot
    assert '"review" -> "write" [label="while review ~ REVISE (max 3 rounds)", style=dashed' in dot


def test_an_unbounded_cycle_is_refused_with_the_path() -> None:
    text = team(
        """
        nodes:
          - {name: a, agent: planner, after: [c]}
          - {name: b, agent: writer, after: [a]}
          - {name: c, agent: critic, after: [b]}
        """
    )
    message = problems(text)
    assert "unbounded cycle: " in message
    assert "a → b → c → a" in message or "b → c → a → b" in message or "c → a → b → c" in message
    assert "add a bounded loop" in message
    assert "team.yaml:" in message and "Team/t" in message


def test_a_loop_without_a_bound_is_refused() -> None:
    text = team(
        """
        nodes:
          - {name: a, agent: planner}
          - {name: b, agent: critic, after: [a]}
        loops:
          - {after: b, to: a, when: {key: b, matches: AGAIN}}
        """
    )
    message = problems(text)
    assert "spec.loops[0]" in message and "max_rounds" in message


def test_an_unknown_member_is_refused_with_a_suggestion() -> None:
    message = problems(team("nodes: [{name: a, agent: planer}]"))
    assert "spec.nodes[0].agent" in message
    assert "Agent 'planer' not found" in message
    assert "did you mean 'planner'?" in message
    message = problems(team("strategy: {kind: sequential, members: [planner, riter]}"))
    assert "spec.strategy.members[1]" in message and "did you mean 'writer'?" in message


def test_an_unreachable_node_is_refused() -> None:
    text = team(
        """
        nodes:
          - {name: a, agent: planner}
          - {name: b, agent: writer, after: [a]}
          - {name: orphan, agent: critic}
        """
    )
    message = problems(text)
    assert "node 'orphan' is unreachable: it waits for nothing and is not an entry" in message
    assert "spec.nodes[2].name" in message
    assert "list it in `entry`" in message
    # Listing it as an entry makes it a second starting point.
    fixed = text.replace("nodes:\n", "entry: [a, orphan]\n  nodes:\n")
    assert team_graph(check(fixed)).entry == ("a", "orphan")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("nodes: [{name: a, agent: planner}, {name: b, agent: writer, after: [aa]}]",
         "'b' waits for unknown node 'aa'"),
        ("nodes: [{name: a, agent: planner, input: '{state.nope}'}]",
         "state key 'nope' is never written"),
        ("nodes: [{name: a, agent: planner}, {name: a, agent: writer, after: [a]}]",
         "node 'a' is defined twice"),
        ("nodes: [{name: a, agent: planner, tool: x}]", "exactly one of `agent`, `tool`"),
        ("nodes: [{name: a, agent: planner}]\nstrategy: {kind: sequential, members: [planner]}",
         "either `nodes` (an explicit graph) or a `strategy`"),
        ("strategy: {kind: planner-workers-evaluator, planner: planner}",
         "needs `planner`, `workers` and `evaluator`"),
        ("nodes: [{name: a, agent: planner, when: {key: a}}]", "exactly one of `equals`"),
        ("nodes: [{name: a, agent: planner}, {name: b, agent: writer, after: [a]}]\n"
         "loops: [{after: a, to: b, when: {key: a, equals: x}, max_rounds: 2}]",
         "goes back to 'b', which does not come before 'a'"),
    ],
)  # fmt: skip
def test_other_mistakes_name_the_field_and_the_fix(body: str, says: str) -> None:
    assert says in problems(team(body))


def test_graph_show_prints_mermaid_or_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "cli.db"))
    spec = tmp_path / "team.yaml"
    spec.write_text(team(RESEARCH))
    assert main(["graph", "show", "t", "-f", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD") and "plan<br/>agent: planner" in out
    assert main(["graph", "show", "t"]) == 2  # not applied yet
    assert "apply it first" in capsys.readouterr().err
    assert main(["apply", "-f", str(spec)]) == 0
    capsys.readouterr()
    assert main(["graph", "show", "t", "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "t" {') and '"evaluate" -> "plan"' in dot
