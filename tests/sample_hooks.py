"""Hooks named by `module:function` in Agent specs used by the tests."""

from __future__ import annotations

from typing import Any

from agentrt.models.base import ModelRequest, ModelResponse


def tag_request(ctx: Any, request: ModelRequest) -> ModelRequest:
    """Add a system note naming the run's agent (deterministic: replay-safe)."""
    note = {"role": "system", "content": f"agent={ctx.spec.agent}"}
    return ModelRequest(request.model, [*request.messages, note], request.tools)


async def shout(ctx: Any, response: ModelResponse) -> ModelResponse:
    """Upper-case the model's text."""
    content = response.content.upper() if response.content else response.content
    return ModelResponse(
        content, response.tool_calls, response.input_tokens, response.output_tokens
    )
