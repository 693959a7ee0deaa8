"""The offline, deterministic ``scripted`` model provider.

A script is a list of :class:`~agentrt.spec.resources.ScriptedRule`. The reply
is a pure function of the conversation so far, which is what lets the runtime
replay and resume runs that used it: the same messages always produce the same
reply, tool-call ids and token counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agentrt._json import dumps_str
from agentrt.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolDef
from agentrt.models.tokens import estimate_tokens, text_of, tokens_of_chars
from agentrt.spec.patterns import search
from agentrt.spec.resources import ScriptedRule, ScriptedStep

__all__ = ["ScriptedClient", "scripted_reply"]

_PLACEHOLDER = re.compile(r"\{(input|last_tool_result|step)\}")


def scripted_reply(
    rules: Sequence[ScriptedRule],
    messages: list[Message],
    tools: Sequence[ToolDef] = (),
    *,
    model: str = "scripted",
) -> ModelResponse:
    """Compute the scripted model's reply to a conversation.

    The input is the content of the latest ``user`` message. The first rule
    whose ``match`` regex is found in it (RE2, see :mod:`agentrt.spec.patterns`) supplies the steps;
    with no matching rule the reply is ``"You said: {input}"``. The step index
    is the number of ``assistant`` messages after that user message; past the
    last step the reply is the latest ``tool`` message's content, or
    ``"done"`` when there is none.

    ``{input}``, ``{last_tool_result}`` and ``{step}`` are substituted in the
    step's content and in every string value (at any depth) of its tool-call
    arguments. Other braces are left alone.

    Args:
        rules: The script, tried in order.
        messages: The conversation, in Chat Completions shape.
        tools: The tools offered. Accepted so the call mirrors a real model
            request; the reply does not depend on it (a script names its tools).
        model: Model name reported in the response.

    Returns:
        The reply, with tool-call ids ``call_{step}_{j}`` and token counts of
        about four characters per token (at least 1 each).
    """
    del tools  # see the docstring: the script alone decides the tool calls
    user_index = -1
    last_tool: str | None = None
    for index in range(len(messages) - 1, -1, -1):
        role = messages[index].get("role")
        if role == "tool" and last_tool is None:
            last_tool = text_of(messages[index].get("content"))
        elif role == "user":
            user_index = index
            break
    if last_tool is None:
        for index in range(user_index - 1, -1, -1):
            if messages[index].get("role") == "tool":
                last_tool = text_of(messages[index].get("content"))
                break

    text = text_of(messages[user_index].get("content")) if user_index >= 0 else ""
    step = sum(1 for m in messages[user_index + 1 :] if m.get("role") == "assistant")

    content: str | None
    calls: list[ToolCall] = []
    rule = next((r for r in rules if search(r.match, text)), None)
    if rule is None:
        content = f"You said: {text}"
    elif step < len(rule.steps):
        values = {"input": text, "last_tool_result": last_tool or "", "step": str(step)}
        content, calls = _render(rule.steps[step], values, step)
    else:
        content = last_tool if last_tool is not None else "done"

    out_chars = len(content or "") + sum(len(c.arguments) for c in calls)
    return ModelResponse(
        content=content,
        tool_calls=calls,
        input_tokens=estimate_tokens(messages),
        output_tokens=tokens_of_chars(out_chars),
        finish_reason="tool_calls" if calls else "stop",
        model=model,
    )


class ScriptedClient:
    """A :class:`~agentrt.models.base.ModelClient` that answers from a script.

    No I/O and no sleeping: each completion is :func:`scripted_reply` of the
    request's messages.

    Args:
        rules: The script, tried in order.
        model: Model name reported in responses.
    """

    def __init__(self, rules: Sequence[ScriptedRule], *, model: str = "scripted") -> None:
        self.rules = list(rules)
        self.model = model

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Reply to ``request`` from the script.

        Args:
            request: The chat request; only its messages matter.

        Returns:
            The scripted reply.
        """
        return scripted_reply(self.rules, request.messages, request.tools, model=self.model)

    async def close(self) -> None:
        """Do nothing; there is nothing to release."""


def _render(
    step: ScriptedStep, values: dict[str, str], index: int
) -> tuple[str | None, list[ToolCall]]:
    content = None if step.content is None else _substitute(step.content, values)
    calls = [
        ToolCall(
            id=f"call_{index}_{j}",
            name=call.name,
            arguments=dumps_str(_substitute_any(call.arguments, values)),
        )
        for j, call in enumerate(step.tool_calls)
    ]
    return content, calls


def _substitute(text: str, values: dict[str, str]) -> str:
    # One pass, so a placeholder inside a substituted value (say, a user who
    # types "{step}") is kept literally rather than expanded a second time.
    if "{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _substitute_any(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _substitute(value, values)
    if isinstance(value, dict):
        return {k: _substitute_any(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute_any(v, values) for v in value]
    return value
