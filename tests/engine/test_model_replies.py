"""Replies a model server should not send: impossible usage, a reply cut off by the
output limit. Neither passes silently."""

from __future__ import annotations

import pytest

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.errors import ModelError
from agentrt.models.base import ModelResponse, check_usage
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import ScriptedRule
from agentrt.state import SqliteStore
from tests.conftest import resources, rules


@pytest.mark.parametrize(
    ("tokens_in", "tokens_out"),
    [(-12_000_000, 5), (10, -1), (10**12, 5), (10, 10**12)],
)
def test_impossible_usage_is_a_model_error_for_every_provider(
    tokens_in: int, tokens_out: int
) -> None:
    reply = ModelResponse("hi", input_tokens=tokens_in, output_tokens=tokens_out)
    with pytest.raises(ModelError) as caught:
        check_usage(reply, model="m")
    assert str(tokens_in if tokens_in < 0 or tokens_in > 10**9 else tokens_out) in str(caught.value)
    assert not caught.value.retryable


def test_possible_usage_passes() -> None:
    reply = ModelResponse("hi", input_tokens=120_000, output_tokens=0)
    assert check_usage(reply, model="m") is reply


async def test_negative_usage_from_the_server_is_refused_not_counted(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "fine"}))
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, agent={"budgets": {"max_tokens": 1000}}))
        model_server.inject_reply(usage={"prompt_tokens": -12_000_000, "completion_tokens": 5})
        result = await rt.run("bot", "x")
    assert result.status == "failed"
    assert "-12000000" in (result.reason or "") and "usage" in (result.reason or "")
    run = await store.get_run(result.run_id)
    assert run is not None and run.usage.input_tokens == 0 and run.usage.model_calls == 0
    (error,) = [e for e in await store.read_events(result.run_id) if e.type == ev.MODEL_ERROR]
    assert error.data["error"]["code"] == "model_error"


async def test_impossible_usage_falls_back_to_the_next_model(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(rules({"content": "from primary"}))
    async with ModelTestServer(rules({"content": "from backup"})) as backup:
        async with Runtime(store) as rt:
            await rt.apply(
                resources(
                    model_server.url,
                    model={"fallbacks": ["backup"]},
                    extra_models={
                        "backup": {"provider": "openai", "base_url": backup.url, "max_retries": 0}
                    },
                )
            )
            model_server.inject_reply(usage={"prompt_tokens": 10**13, "completion_tokens": 1})
            result = await rt.run("bot", "x")
    assert result.ok and result.output == "from backup"
    assert result.usage.input_tokens < 1000


# --- a reply cut off by the output limit -------------------------------------------

CUT = [
    ScriptedRule.model_validate({"match": "cut off", "steps": [{"content": "forty-two."}]}),
    ScriptedRule.model_validate({"match": ".*", "steps": [{"content": "The answer is "}]}),
]


async def test_a_cut_off_reply_fails_the_run_by_default(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CUT)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, model={"max_output_tokens": 4}))
        model_server.inject_reply(finish_reason="length")
        result = await rt.run("bot", "x")
        replayed = await rt.replay(result.run_id)
    assert result.status == "failed" and result.output is None
    reason = result.reason or ""
    assert "cut off" in reason and "max_output_tokens" in reason and "on_truncated" in reason
    finished = (await store.read_events(result.run_id))[-1]
    assert finished.data["error"]["code"] == "output_truncated"
    assert replayed.status == "failed" and replayed.reason == result.reason


async def test_a_cut_off_reply_is_continued_when_asked(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CUT)
    agent = {"loop": {"on_truncated": "continue"}}
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, agent=agent))
        model_server.inject_reply(finish_reason="length")
        result = await rt.run("bot", "x", session="s")
        replayed = await rt.replay(result.run_id)
        model_server.reset_log()
        later = await rt.run("bot", "and then?", session="s")
    assert result.ok and result.output == "The answer is forty-two."
    assert replayed.output == result.output
    assert result.usage.model_calls == 2
    # The model was shown its cut-off text and asked to go on from there.
    assert later.ok
    history = [m["content"] for m in model_server.requests[0]["messages"][1:]]
    assert history[:4] == ["x", "The answer is ", history[2], "forty-two."]
    assert "cut off" in history[2]


async def test_a_cut_off_reply_can_be_accepted_as_it_is(
    store: SqliteStore, model_server: ModelTestServer
) -> None:
    model_server.set_rules(CUT)
    async with Runtime(store) as rt:
        await rt.apply(resources(model_server.url, agent={"loop": {"on_truncated": "accept"}}))
        model_server.inject_reply(finish_reason="length")
        result = await rt.run("bot", "x")
    assert result.ok and result.output == "The answer is "
    (reply,) = [e for e in await store.read_events(result.run_id) if e.type == ev.MODEL_RESULT]
    assert reply.data["finish"] == "length"
