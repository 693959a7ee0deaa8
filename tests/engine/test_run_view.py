"""One read model of a run: what ``wait`` returns, ``runs show`` and ``runs export`` print."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import read_run
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.engine.test_agent_tool import RULES, _team


async def test_the_view_of_a_run_agrees_with_its_result_and_lists_its_children(
    store: SqliteStore, model_server: ModelTestServer, effects: Path, tmp_path: Path
) -> None:
    model_server.set_rules(RULES)
    async with Runtime(store) as rt:
        await rt.apply(_team(model_server.url))
        result = await rt.run("lead", "plan it")
        forked = await rt.fork(result.run_id, from_step=1, start=False)
        exported = await rt.export_run(result.run_id)
    view = await read_run(store, result.run_id, children=True)
    assert view.result() == result
    (child,) = view.children  # the agent tool's run; the fork is not a child
    assert child.run.agent == "child" and child.output == "child says 42"
    assert forked.parent_run == result.run_id
    assert exported == view.export()
    # The CLI shows the same view.
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentrt.cli.main", "--store", str(tmp_path / "agentrt.db"),
        "runs", "show", result.run_id, "--json", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await shown.communicate()
    assert shown.returncode == 0
    data = json.loads(out)
    assert data == json.loads(json.dumps(view.to_dict()))
    assert data["run"]["steps"] == result.steps
    assert data["run"]["children"] == [child.run.id]
