"""A catastrophic pattern in a spec cannot hang a run: scripted rules, approval rules,
stop conditions, routes and team conditions all match in linear time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `(a+)+$` against 40 a's and a "!": about 2**40 steps for a backtracking engine.
TEXT = "check " + "a" * 40 + "!"

SPECS = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m}
spec:
  provider: scripted
  script:
    - {match: '(a+)+$', steps: [{content: "never"}]}
    - match: '^check'
      steps:
        - tool_calls: [{name: record, arguments: {text: "{input}"}}]
        - content: "{last_tool_result}"
---
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: plain}
spec: {provider: scripted}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: record}
spec:
  kind: python
  callable: tests.sample_tools:record
  approval: {required: true, when: {text: '(a+)+$'}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot}
spec:
  model: m
  tools: [record]
  loop: {stop: {output_matches: '(a+)+$'}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: echo}
spec: {model: plain}
---
apiVersion: agentrt.dev/v1
kind: Team
metadata: {name: desk}
spec:
  nodes:
    - name: pick
      route: {members: [hit, miss], rules: [{match: '(a+)+$', member: hit}], default: miss}
    - {name: hit, agent: echo, after: [pick], when: {key: pick, equals: hit}, output: answer}
    - {name: miss, agent: echo, after: [pick], when: {key: pick, equals: miss}, output: answer}
    - name: check
      agent: echo
      after: [hit, miss]
      when: {key: answer, not_matches: '(a+)+$'}
      input: "{state.answer}"
  output: check
"""


def _agentrt(*args: str, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a backtracking match would run for days
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def test_catastrophic_patterns_in_every_regex_field_do_not_hang_a_run(tmp_path: Path) -> None:
    (tmp_path / "specs.yaml").write_text(SPECS)
    env = {
        **os.environ,
        "AGENTRT_STORE": str(tmp_path / "agentrt.db"),
        "AGENTRT_TEST_EFFECTS": str(tmp_path / "effects.txt"),
    }
    subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "apply", "-f", str(tmp_path / "specs.yaml")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    agent = _agentrt("run", "bot", TEXT, env=env)
    # No rule, approval or stop condition matched; the tool ran without waiting.
    assert agent["status"] == "succeeded"
    assert agent["output"] == f"recorded {TEXT}"
    team = _agentrt("run", "desk", TEXT, env=env)
    assert team["status"] == "succeeded"
    assert team["output"] == f"You said: You said: {TEXT}"
