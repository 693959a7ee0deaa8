"""The scripted provider: rule choice, steps, placeholders and token counts."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from agentrt.models import ModelClient, ModelRequest, ScriptedClient, scripted_reply
from agentrt.spec.resources import ScriptedRule

RULES = [
    ScriptedRule.model_validate(
        {
            "match": r"weather in (\w+)",
            "steps": [
                {
                    "content": "Looking up {input}",
                    "tool_calls": [
                        {"name": "weather", "arguments": {"query": "{input}", "units": "C"}},
                        {"name": "log", "arguments": {"nested": {"items": ["step {step}", 3]}}},
                    ],
                },
                {"content": "It is {last_tool_result} (step {step}); keep {braces} and {0}"},
            ],
        }
    ),
    ScriptedRule.model_validate({"match": "weather", "steps": [{"content": "second rule"}]}),
    ScriptedRule.model_validate({"match": "^search", "steps": [{"tool_calls": [{"name": "s"}]}]}),
]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(content: str | None = None, calls: list[dict[str, Any]] | None = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


def tool(content: str, call_id: str = "call_0_0") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def test_no_rules_echoes_the_input() -> None:
    reply = scripted_reply([], [{"role": "system", "content": "be nice"}, user("hello")])
    assert reply.content == "You said: hello"
    assert reply.tool_calls == []
    assert reply.finish_reason == "stop"
    assert reply.model == "scripted"


def test_no_matching_rule_echoes_the_input() -> None:
    assert scripted_reply(RULES, [user("nothing to see")]).content == "You said: nothing to see"


def test_first_matching_rule_wins() -> None:
    first = scripted_reply(RULES, [user("weather in Paris")])
    assert first.content == "Looking up weather in Paris"
    # "weather" alone does not match the first rule's regex, so the second applies.
    assert scripted_reply(RULES, [user("weather")]).content == "second rule"


def test_match_uses_the_latest_user_message() -> None:
    messages = [user("weather in Oslo"), assistant("x"), user("search docs")]
    reply = scripted_reply(RULES, messages)
    assert [c.name for c in reply.tool_calls] == ["s"]
    assert reply.content is None


def test_tool_calls_have_substituted_arguments_and_deterministic_ids() -> None:
    reply = scripted_reply(RULES, [user("weather in Paris")])
    assert [c.id for c in reply.tool_calls] == ["call_0_0", "call_0_1"]
    assert [c.name for c in reply.tool_calls] == ["weather", "log"]
    assert orjson.loads(reply.tool_calls[0].arguments) == {
        "query": "weather in Paris",
        "units": "C",
    }
    assert orjson.loads(reply.tool_calls[1].arguments) == {"nested": {"items": ["step 0", 3]}}
    assert reply.finish_reason == "tool_calls"


def test_step_index_counts_assistant_messages_after_the_latest_user() -> None:
    first = scripted_reply(RULES, [user("weather in Rome")])
    messages = [
        user("weather in Rome"),
        first.assistant_message(),
        tool("21C", "call_0_0"),
        tool("logged", "call_0_1"),
    ]
    second = scripted_reply(RULES, messages)
    assert second.content == "It is logged (step 1); keep {braces} and {0}"
    assert second.tool_calls == []


def test_step_index_restarts_with_a_new_user_message() -> None:
    messages = [user("weather in Rome"), assistant("a"), assistant("b"), user("weather in Lima")]
    assert scripted_reply(RULES, messages).content == "Looking up weather in Lima"


def test_past_the_end_replies_with_the_last_tool_result() -> None:
    messages = [user("weather in Rome"), assistant("a"), tool("sunny"), assistant("b")]
    reply = scripted_reply(RULES, messages)
    assert reply.content == "sunny"
    assert reply.finish_reason == "stop"


def test_past_the_end_without_tool_results_is_done() -> None:
    messages = [user("weather in Rome"), assistant("a"), assistant("b")]
    assert scripted_reply(RULES, messages).content == "done"


def test_last_tool_result_is_empty_when_there_is_none() -> None:
    rules = [ScriptedRule.model_validate({"steps": [{"content": "[{last_tool_result}]"}]})]
    assert scripted_reply(rules, [user("x")]).content == "[]"


def test_placeholders_in_the_input_are_not_expanded_twice() -> None:
    rules = [ScriptedRule.model_validate({"steps": [{"content": "<{input}>"}]})]
    assert scripted_reply(rules, [user("{step} {input}")]).content == "<{step} {input}>"


def test_content_given_as_parts_is_read_as_text() -> None:
    parts = [{"type": "text", "text": "weather "}, {"type": "text", "text": "in Bern"}]
    assert scripted_reply(RULES, [user(parts)]).content == "Looking up weather in Bern"  # type: ignore[arg-type]


def test_replies_are_deterministic() -> None:
    messages = [user("weather in Paris"), assistant("a"), tool("12C")]
    replies = [scripted_reply(RULES, [dict(m) for m in messages]) for _ in range(3)]
    assert replies[0] == replies[1] == replies[2]
    assert replies[0].to_dict() == replies[2].to_dict()


def test_token_counts_are_characters_over_four_rounded_up() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    messages = [
        {"role": "system", "content": "abc"},
        user("weather in Paris"),
        assistant(None, [call]),
        tool("12345"),
    ]
    reply = scripted_reply(RULES, messages)
    assert reply.content == "It is 12345 (step 1); keep {braces} and {0}"
    assert reply.input_tokens == math.ceil((3 + 16 + 7 + 5) / 4)
    assert reply.output_tokens == math.ceil(len(reply.content) / 4)

    first = scripted_reply(RULES, [user("weather in Paris")])
    out_chars = len(first.content or "") + sum(len(c.arguments) for c in first.tool_calls)
    assert first.output_tokens == math.ceil(out_chars / 4)


def test_token_counts_are_at_least_one() -> None:
    rules = [ScriptedRule.model_validate({"steps": [{"content": ""}]})]
    reply = scripted_reply(rules, [user("")])
    assert (reply.input_tokens, reply.output_tokens) == (1, 1)


@pytest.mark.parametrize("model", ["scripted", "my-model"])
async def test_client_completes_from_the_script(model: str) -> None:
    client = ScriptedClient(RULES, model=model)
    assert isinstance(client, ModelClient)
    request = ModelRequest(model="ignored", messages=[user("weather in Paris")])
    response = await client.complete(request)
    assert response == scripted_reply(RULES, request.messages, model=model)
    assert response.model == model
    await client.close()
    await client.close()
