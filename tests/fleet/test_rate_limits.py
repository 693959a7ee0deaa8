"""A Model's rate limits held across a fleet: two ``agentrt worker`` processes on one
store (a SQLite file, a PostgreSQL schema) run 60 queued runs on a Model limited to
600 requests a minute and 60 on one limited to 300,000 tokens a minute, at once. What
the model server saw never passes either bucket in any span of time, as its request
log's timestamps show; every run succeeded, no call failed, no run asked twice (but
one taken over from a stalled worker), and the runs that waited say for which limit.

The limits are high so that the test takes seconds: 600 a minute is a bucket of 10
(a second's worth) refilled 590/60 a second, so no 60 s ever hold more than 600 calls,
and no span of T seconds more than 10 + 9.83 T. Each span is widened by the time a
call may take from its turn in the bucket to its arrival at the server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.models.tokens import estimate_tokens, tokens_of_chars
from agentrt.spec import ScriptedRule, parse_resource
from agentrt.state import Store
from agentrt.state.rate_limits import refill_of
from tests.conftest import resources
from tests.rate_spans import over_the_bucket

from .harness import Fleet, owners_after_start, settled

pytestmark = pytest.mark.slow

RUNS = 60
RPM = 600
TPM = 300_000  # a bucket of 5,000 tokens; a call counts about 500 (its bytes and 400 out)
REPLY = "token " * 266  # 400 tokens out, as the server counts them (4 characters a token)
SLACK_S = 0.5  # from a call's turn in its worker to its arrival here, at most (a loaded CI machine)


def _rules() -> list[ScriptedRule]:
    return [
        ScriptedRule.model_validate({"match": "^w", "steps": [{"content": REPLY}]}),
        ScriptedRule.model_validate({"match": ".*", "steps": [{"content": "fine"}]}),
    ]


def _writer() -> object:
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Agent", "metadata": {"name": "writer"},
         "spec": {"model": "t", "instructions": "Write."}}
    )  # fmt: skip


async def test_two_workers_together_never_pass_a_models_rate_limits(
    fleet_url: str, tmp_path: Path
) -> None:
    async with ModelTestServer(_rules(), latency_s=0.05) as server:
        async with Runtime(fleet_url, resume_interrupted=False, notice_cancels=False) as rt:
            limited = {"rate_limits": {"requests_per_minute": RPM}}
            tokens = {"provider": "openai", "base_url": server.url, "max_retries": 0,
                      "max_output_tokens": 400, "rate_limits": {"tokens_per_minute": TPM}}  # fmt: skip
            await rt.apply(
                [*resources(server.url, model=limited, extra_models={"t": tokens}), _writer()]
            )
            ids = [(await rt.submit("bot", f"q{i}", start=False)).id for i in range(RUNS)]
            ids += [(await rt.submit("writer", f"w{i}", start=False)).id for i in range(RUNS)]
        fleet = Fleet.on(fleet_url, tmp_path, lease_ttl_s=10.0)  # no takeovers are tested here
        began = time.monotonic()
        workers = [fleet.start(name, concurrency=50) for name in ("a", "b")]
        try:
            await asyncio.gather(*(w.serving() for w in workers))
            async with Store.from_url(fleet_url) as store:
                runs = await settled(store, ids, timeout=120)
                logs = {i: await store.read_events(i) for i in ids}
        finally:
            fleet.stop_all()
        took = time.monotonic() - began
        requests = server.requests
    assert {r.status for r in runs.values()} == {"succeeded"}
    assert not [e for log in logs.values() for e in log if e.type == ev.MODEL_ERROR]
    # Both workers ran some of them. A run taken over from a stalled worker calls its
    # model again (and takes another turn); no other run asks twice.
    owners = {owners_after_start(log)[0].split(":")[1] for log in logs.values()}
    assert owners == {str(w.pid) for w in workers}, owners
    again = {
        model: sum(len(owners_after_start(logs[i])) - 1 for i in ids[start : start + RUNS])
        for model, start in (("m", 0), ("t", RUNS))
    }

    calls = [(float(r["_at"]), 1.0) for r in requests if r["model"] == "m"]
    assert RUNS <= len(calls) <= RUNS + again["m"], (len(calls), again)
    per_minute = refill_of(RPM)
    assert not over_the_bucket(
        calls, capacity=per_minute.capacity, per_s=per_minute.per_s, slack_s=SLACK_S
    )
    spent = [
        (float(r["_at"]), float(estimate_tokens(r["messages"]) + tokens_of_chars(len(REPLY))))
        for r in requests
        if r["model"] == "t"
    ]
    assert RUNS <= len(spent) <= RUNS + again["t"], (len(spent), again)
    assert all(r["max_tokens"] == 400 for r in requests if r["model"] == "t")
    token_refill = refill_of(TPM)
    assert not over_the_bucket(
        spent, capacity=token_refill.capacity, per_s=token_refill.per_s, slack_s=SLACK_S
    )
    # The buckets held the runs back (unheld, 120 runs take well under a second), and
    # those that waited say for which limit.
    assert took > (RUNS - per_minute.capacity) / per_minute.per_s
    waits = {
        (e.data["model"], e.data["limit"])
        for log in logs.values()
        for e in log
        if e.type == ev.MODEL_WAITING
    }
    assert waits == {("m", "requests_per_minute"), ("t", "tokens_per_minute")}
    for worker in workers:
        assert "Traceback" not in worker.said(), worker.said()
