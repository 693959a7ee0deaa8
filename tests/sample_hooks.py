"""Hooks named by `module:function` in Agent specs used by the tests."""

from __future__ import annotations

import os
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


def stamp(ctx: Any, request: ModelRequest) -> None:
    """Read the run's time and make an id, as a hook may; note what it saw.

    Each line of the file ``AGENTRT_TEST_STAMPS`` names is ``step<TAB>now<TAB>id``.
    ``AGENTRT_TEST_STAMP_ORDER=id-first`` asks for the id first: code changed since
    the run was recorded.
    """
    if os.environ.get("AGENTRT_TEST_STAMP_ORDER") == "id-first":
        made, now = ctx.new_id(), ctx.now()
    else:
        now, made = ctx.now(), ctx.new_id()
    path = os.environ.get("AGENTRT_TEST_STAMPS")
    if path:
        with open(path, "a") as f:
            f.write(f"{ctx.step}\t{now!r}\t{made}\n")
