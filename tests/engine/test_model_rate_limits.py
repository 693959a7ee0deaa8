"""A Model's rate limits, over real HTTP to the test model server: every call takes its
turn from the Model's bucket in the store; calls past the bucket wait (no error, no
retry), each sleeping once for its turn, and the run's log says why; a fallback and
each retry take from their own Model's bucket; a wait is not the step's timeout."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from agentrt import Runtime
from agentrt.cli.render import LiveTrace, Style, render_run_tree
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from agentrt.state.rate_limits import refill_of
from tests.conftest import call, resources, rules
from tests.rate_spans import over_the_bucket


async def test_calls_past_the_limit_wait_their_turn_and_none_fails(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    rpm = 1200  # a bucket of 20, refilled 1180/60 a second
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(
            resources(model_server.url, model={"rate_limits": {"requests_per_minute": rpm}})
        )
        began = time.monotonic()
        results = await asyncio.gather(*(rt.run("bot", f"hello {i}") for i in range(40)))
        took = time.monotonic() - began
    assert {r.status for r in results} == {"succeeded"}
    refill = refill_of(rpm)
    assert took >= (40 - refill.capacity) / refill.per_s - 0.05  # the bucket held them back
    arrivals = [(float(r["_at"]), 1.0) for r in model_server.requests]
    assert len(arrivals) == 40  # one call each: nobody failed and asked again
    assert not over_the_bucket(arrivals, capacity=refill.capacity, per_s=refill.per_s, slack_s=0.3)
    waited = []
    for result in results:
        events = await store.read_events(result.run_id)
        assert not [e for e in events if e.type == ev.MODEL_ERROR]
        waits = [e for e in events if e.type == ev.MODEL_WAITING]
        assert len(waits) <= 1  # one sleep for its turn, never asked again
        if waits:
            [wait] = waits
            assert wait.step == 1 and wait.data["model"] == "m"
            assert (wait.data["limit"], wait.data["value"]) == ("requests_per_minute", rpm)
            # Written when the wait began, between the step's call and its result.
            kinds = [e.type for e in events if e.step == 1]
            assert kinds == [ev.MODEL_CALL, ev.MODEL_WAITING, ev.MODEL_RESULT]
            waited.append(float(wait.data["wait_s"]))
    assert len(waited) == 40 - refill.capacity
    assert max(waited) <= (40 - refill.capacity) / refill.per_s + 0.05
    [bucket] = await store.rate_buckets("default")
    assert (bucket.key, bucket.requests_per_minute) == ("default/m", rpm)


async def test_a_wait_shows_in_the_trace_and_the_tree_and_is_not_the_steps_timeout(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    # 60 a minute: a bucket of one, refilled in 60/59 s; the second step waits longer
    # than a step may take, and still succeeds.
    model_server.set_rules(rules({"tool_calls": [call("add", a=2, b=3)]}, {"content": "5"}))
    out = io.StringIO()
    async with Runtime(store, observers=[LiveTrace(out, Style())]) as rt:
        await rt.apply(
            resources(
                model_server.url,
                tools=["add"],
                model={"rate_limits": {"requests_per_minute": 60}},
                agent={"loop": {"step_timeout_s": 0.5}},
            )
        )
        result = await rt.run("bot", "add")
    assert result.status == "succeeded", result
    events = await store.read_events(result.run_id)
    [wait] = [e for e in events if e.type == ev.MODEL_WAITING]
    assert wait.step == 3 and 0.5 < wait.data["wait_s"] <= 60 / 59
    line = "for model m's rate limit requests_per_minute=60"
    assert f"step   3  waits {wait.data['wait_s']:.2f}s {line}" in out.getvalue()
    run = await store.get_run(result.run_id)
    assert run is not None
    tree = render_run_tree(run, events, Style())
    assert f"├─ step 3  waited {wait.data['wait_s']:.2f}s {line}" in tree


def _spec(url: str, **more: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": url, "max_retries": 0, **more}


async def test_each_attempt_and_each_fallback_takes_from_its_own_models_bucket(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    model_server.inject(503, count=2)  # both attempts of m fail; backup answers
    async with Runtime(store) as rt:
        await rt.apply(
            resources(
                model_server.url,
                model={"rate_limits": {"requests_per_minute": 600}, "fallbacks": ["backup"]},
                extra_models={
                    "backup": _spec(
                        model_server.url,
                        max_output_tokens=20,
                        rate_limits={"requests_per_minute": 120, "tokens_per_minute": 60_000},
                    )
                },
                agent={"loop": {"retry": {"max_attempts": 2, "initial_backoff_s": 0.01}}},
            )
        )
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded"
    backup, primary = await store.rate_buckets("default")
    # Each attempt took one (and the backoff between them refilled a little).
    assert primary.key == "default/m" and 10 - 2 <= primary.requests < 10 - 1.5
    assert primary.tokens == 0 and primary.tokens_per_minute is None  # it limits no tokens
    assert backup.key == "default/backup" and backup.requests == 2 - 1
    # Its call counted at its worst case: more than its 20 output tokens, less than a
    # second's worth (1000) of its limit.
    assert 0 < backup.tokens < 1000 - 20
    assert model_server.requests[-1]["max_tokens"] == 20


async def test_a_model_limiting_tokens_sends_a_capped_output(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(
            resources(model_server.url, model={"rate_limits": {"tokens_per_minute": 600_000}})
        )
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded"
    # No max_output_tokens anywhere: the call is sent the cap it is counted at.
    assert model_server.requests[-1]["max_tokens"] == 4096
    [bucket] = await store.rate_buckets("default")
    assert bucket.tokens < 10_000 - 4096  # a second's worth, less its worst case


async def test_a_model_without_rate_limits_takes_nothing(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url))
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded"
    assert await store.rate_buckets("default") == []
    assert "max_tokens" not in model_server.requests[-1]


async def test_every_attempt_at_a_rate_limited_model_takes_its_turn(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    """The HTTP client of a Model with rate limits does not retry on its own: each
    attempt is one of the step's, recorded, and each took its turn from the bucket."""
    model_server.set_rules(rules({"content": "fine"}))
    model_server.inject(429, count=2)
    model = {"rate_limits": {"requests_per_minute": 1200}, "max_retries": 3}
    retry = {"max_attempts": 3, "initial_backoff_s": 0.01}
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, model=model, agent={"loop": {"retry": retry}}))
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded", result
    events = await store.read_events(result.run_id)
    errors = [e for e in events if e.type == ev.MODEL_ERROR]
    assert [e.data["attempt"] for e in errors] == [1, 2]
    assert len(model_server.requests) == 3  # one request per attempt, no more
