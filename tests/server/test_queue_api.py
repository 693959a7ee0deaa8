"""A queued run's read model says where it stands: its place in its tenant's queue,
how long it has waited, and what holds it (over the API, and in ``runs show``)."""

from __future__ import annotations

import asyncio
import time

from agentrt import Runtime
from tests.conftest import rules
from tests.server.conftest import agent_yaml
from tests.server.harness import Api, Served


async def test_a_queued_run_says_its_place_its_wait_and_what_holds_it(
    served: Served, admin: Api, tenant: str
) -> None:
    served.model.set_rules(rules({"content": "done"}))
    served.model.latency_s = 3.0  # the first run holds the agent's only slot meanwhile
    spec = agent_yaml(served.model.url).replace(
        "instructions: be brief}", "instructions: be brief, max_running: 1}"
    )
    assert (await admin.apply(spec)).status == 200
    # Queued (as a worker fleet's queries are): the server's worker claims them in turn.
    async with Runtime(served.store_url, resume_interrupted=False, notice_cancels=False) as rt:
        first, second = [await rt.submit("bot", text, namespace=tenant, start=False)
                         for text in ("one", "two")]  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        run = await admin.call("GET", f"/v1/runs/{second.id}")
        if run.body["run"]["status"] == "queued" and "queue" in run.body["run"]:
            break
        assert time.monotonic() < deadline, run.body["run"]
        await asyncio.sleep(0.1)
    queue = run.body["run"]["queue"]
    assert queue["position"] == 1 and 0 <= queue["waiting_s"] < 30
    assert queue["reason"] == "agent bot is at its max_running=1"
    ran = await admin.call("GET", f"/v1/runs/{first.id}")
    assert "queue" not in ran.body["run"], "a run that started has no place in the queue"
