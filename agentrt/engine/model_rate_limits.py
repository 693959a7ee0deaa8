"""A model call's turn under its Model's ``rate_limits``, shared by every worker of the store.

Before each call of a Model with rate limits (each attempt, since each is a
request the provider counts; a fallback takes from its own Model's bucket), the
call takes one request and, when the Model limits tokens, its worst case in
tokens from the Model's bucket in the store (:mod:`agentrt.state.rate_limits`):
the bytes of its messages and tool schemas and its ``max_output_tokens``, as a
Budget reserves them (:func:`~agentrt.engine.tenant_budgets.worst_case`). A call
with no ``max_output_tokens`` is sent the Model's, or
:data:`~agentrt.engine.tenant_budgets.DEFAULT_OUTPUT_CAP`, so the count holds.

The count is not brought back to the tokens the call used: a bucket given back
tokens when a call ends would let calls begun later use what calls begun earlier
were counted for, and no 60 seconds would be held to the limit any more (it is
also how OpenAI's own limits count a request: its input and ``max_tokens``, up
front). A Model whose calls use far less than their worst case is held closer by
a lower ``max_output_tokens``.

A call that finds the bucket short waits its turn: it sleeps once, for the time
the refill takes to pay for it, and then goes. It never fails for it and never
asks again. The wait is recorded in the run's log as a ``model.waiting`` event,
written when the wait begins, so whoever follows the run sees why it is slow.
It happens before the step's own timeout starts: a wait is not a slow model.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agentrt.engine import events as ev
from agentrt.engine.journal import Journal
from agentrt.engine.tenant_budgets import DEFAULT_OUTPUT_CAP, worst_case
from agentrt.models.base import ModelRequest
from agentrt.spec.model_spec import ModelSpec
from agentrt.state.rate_limits import RateTake

__all__ = ["bucket_key", "take_turn"]


def bucket_key(namespace: str, model: str) -> str:
    """The bucket of a tenant's Model (``acme/gpt``)."""
    return f"{namespace}/{model}"


async def take_turn(
    journal: Journal, namespace: str, step: int, name: str, spec: ModelSpec, request: ModelRequest
) -> ModelRequest:
    """Wait for the turn of a call of Model ``name`` (whose spec is ``spec``) at ``step``
    in its bucket; the request as it is to be sent (its output capped when the Model
    limits tokens). A Model without rate limits goes at once, with no store write."""
    limits = spec.rate_limits
    if limits is None:
        return request
    tokens = 0
    if limits.tokens_per_minute is not None:
        if request.max_output_tokens is None:
            cap = spec.max_output_tokens or DEFAULT_OUTPUT_CAP
            request = replace(request, max_output_tokens=cap)
        tokens = worst_case(request, [spec]).tokens
    take = RateTake(
        bucket_key(namespace, name),
        namespace,
        limits.requests_per_minute,
        limits.tokens_per_minute,
        1,
        tokens,
    )
    taken = await journal.store.take_rate(take, now=journal.clock())
    if taken.wait_s <= 0:
        return request
    loop = asyncio.get_running_loop()
    until = loop.time() + taken.wait_s
    data = {"model": name, "limit": taken.limit, "value": taken.value, "wait_s": taken.wait_s}
    await journal.append(ev.MODEL_WAITING, data, step=step, durable=False)
    await journal.flush()  # within the wait: whoever follows the run sees why now
    await asyncio.sleep(max(0.0, until - loop.time()))
    return request
