"""The event types of a run's log, and what each one's data holds.

A step is recorded as an intent event and a result event. Events carry deltas
only: the conversation is rebuilt from them, never stored again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APPROVAL_DECIDED",
    "APPROVAL_REQUESTED",
    "CONTEXT_VALUE",
    "MEMORY_FAILED",
    "MEMORY_SUMMARY",
    "MODEL_CALL",
    "MODEL_CHECKED",
    "MODEL_ERROR",
    "MODEL_RESULT",
    "MODEL_WAITING",
    "NODE_FINISHED",
    "NODE_STARTED",
    "RUN_CREATED",
    "RUN_FINISHED",
    "RUN_REOPENED",
    "RUN_STARTED",
    "RUN_WAITING",
    "TOOL_CALL",
    "TOOL_DECISION",
    "TOOL_RESULT",
    "TOOL_UNKNOWN",
    "node_instance",
]

RUN_CREATED = "run.created"  # {input, spec, [fork: {run, step}], [by: who started it], [role]}
RUN_STARTED = "run.started"  # {owner, resumed: bool, history: [runs, digest], [by]}
RUN_WAITING = "run.waiting"  # {reason}: the run needs a person (e.g. a step is unknown)
# Session memory, as recorded before summaries were model steps (logs of older versions
# hold these; a summary is now a model step with kind "summary", see MODEL_CALL).
MEMORY_SUMMARY = "memory.summary"  # {through: run id, turns, kept, text, model, usage}
MEMORY_FAILED = "memory.failed"  # {model, error}: the summary model failed; so did the run
# A value of the run's context (ctx.now(), ctx.new_id()), asked for at a step: replay
# returns it again (engine/context_values.py).
CONTEXT_VALUE = "context.value"  # {kind: now|id, value, step, n, check}
# A cancelled end names who asked (by) and when (asked_at), if the request did.
RUN_FINISHED = "run.finished"  # {status, output, reason, [error], [by], [asked_at]}
# A budget_exhausted run raised and put back in the queue; its log goes on after its end
# (engine/budget_raise.py). added: what its limits gained; was: the reason it had stopped.
RUN_REOPENED = "run.reopened"  # {added: {tokens, cost, tool_calls, deadline}, was, [by]}
# offered: {Tool: [its tools]} (discovered at run time); renamed: {model name: [Tool, tool]};
# notices: tools left out or renamed on a clash, recorded once per run (engine/offer.py).
# kind: a step that is not the loop's own: "summary" (session memory: through, turns,
# kept) or "route" (a team's route node); key: the team node instance (tools/keys.py);
# degraded: a Budget ran low, only the cheapest Model is asked: {to, budget, limit, left}
# (engine/degrade.py); routing: which Model the Agent's routing picked and why, {model,
# by: rule|default|tier|escalated, [rule], [label], [from]} (engine/model_routing.py).
# step: {model, digest, [offered], [renamed], [notices], [kind], [key], [degraded], [routing]}
MODEL_CALL = "model.call"
# The answer of a step checked by its Agent's routing.check: passed, or why not and the
# tier it escalates to (none: the last tier's answer failed) (engine/model_routing.py).
MODEL_CHECKED = "model.checked"  # step: {model, passed, [why], [escalate_to], [accepted]}
# why: http_429, http_500, timeout, unreachable, bad_reply, ... or circuit_open: the
# Model was skipped, not called ({model, why, until, error}: no attempt; until: when a
# probe may go through).
MODEL_ERROR = "model.error"  # step: {model, attempt, why, error, [retry_in]}
# via: the fallback that answered; route (unless the first Model answered its first
# call): each Model tried, in order, {model, outcome, attempts, [probe]} (engine/model_route.py).
MODEL_RESULT = "model.result"  # step: ModelResponse.to_dict() + {cost, [via], [route]}
# A call waits its turn under its Model's rate_limits (engine/model_rate_limits.py).
MODEL_WAITING = "model.waiting"  # step: {model, limit, value, wait_s}
TOOL_CALL = "tool.call"  # step: {id, name, args, [toolset], [key], [attempt], [policy]}
TOOL_RESULT = "tool.result"  # step: {output, [error], ms, [reconciled]}
TOOL_UNKNOWN = "tool.unknown"  # step: {reason}: started, no result, not safe to re-run
TOOL_DECISION = "tool.decision"  # step: {action: rerun|output|fail, [output], [by]}
APPROVAL_REQUESTED = "approval.requested"  # step: {name, args, [policy]}: waits for a person
APPROVAL_DECIDED = "approval.decided"  # step: {approved: bool, [reason], [by]}
# Team runs: a node instance is (node, round, item).
# key: the node instance's (the same on every attempt); step: a tool node attempt's tool step.
NODE_STARTED = "node.started"  # {node, round, item, attempt, key, kind, target, [step]}
NODE_FINISHED = "node.finished"  # {node, round, item, status, output, items, [loops], ...}


def node_instance(data: Mapping[str, Any]) -> tuple[str, int, int]:
    """The (node, round, item) a ``node.started`` or ``node.finished`` event is about."""
    return (data.get("node", ""), int(data.get("round", 1)), int(data.get("item", 0)))
