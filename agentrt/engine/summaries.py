"""Session summaries as model steps: earlier turns folded by a model before the loop starts.

When the session memory policy (see :mod:`agentrt.engine.history_policy`) needs a
summary, the run takes it as its first step: a model step of kind ``summary``
through the gateway, so the run's hooks, budgets, retries and fallbacks wrap
it as they wrap the loop's own steps, and it counts against
``loop.max_steps``. Its ``model.call`` records which turns it folds
(``through``, ``turns``, ``kept``); its ``model.result`` is the summary. The
conversation rebuilt from the run's log leaves it out, and the session's next
run starts from it.

Logs written before summaries were steps hold a ``memory.summary`` (or
``memory.failed``) event instead; resume and replay of those read it as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentrt.engine import events as ev
from agentrt.engine.agent_loop import RunContext
from agentrt.engine.gateway import ModelChain, model_step
from agentrt.engine.history_policy import (
    HistoryPlan,
    Summary,
    Turn,
    history_budget,
    plan_history,
    summary_request,
    with_summary,
)
from agentrt.errors import NondeterminismError, error_from_dict
from agentrt.models.base import Message, ModelResponse
from agentrt.state.base import Event, Usage

__all__ = ["SUMMARY_STEP", "legacy_summary_event", "session_memory", "summary_of"]

SUMMARY_STEP = "summary"
"""The ``kind`` a summary's ``model.call`` records."""


def legacy_summary_event(events: Sequence[Event]) -> Event | None:
    """The ``memory.summary`` or ``memory.failed`` event of a log of an older version."""
    return next((e for e in events if e.type in (ev.MEMORY_SUMMARY, ev.MEMORY_FAILED)), None)


async def session_memory(
    ctx: RunContext, turns: list[Turn], recorded: Event | None
) -> list[Message]:
    """The earlier turns the model is given under the agent's session memory policy.

    A summary this run needs is a model step (recorded, so resume and replay
    take it from the log); ``recorded`` is the summary event of a log written
    before that, read instead.
    """
    agent = ctx.spec.agent_spec
    policy = agent.memory.session
    budget = history_budget(policy, ctx.spec.models[agent.model], agent.model)
    plan = plan_history(policy, turns, budget)
    if not plan.fold or budget is None:
        return plan.messages
    through = plan.fold[-1].run_id
    if recorded is not None:
        text = _recorded_summary(ctx, recorded, through)
    else:
        text = await _summarise(ctx, plan, through)
    return with_summary(Summary(text, through), plan.kept, budget)


def _recorded_summary(ctx: RunContext, recorded: Event, through: str) -> str:
    """The summary an older version recorded as an event (it took no step of the run)."""
    if recorded.type == ev.MEMORY_FAILED:
        raise error_from_dict(recorded.data.get("error") or {})  # as it failed
    data = recorded.data
    if data.get("through") != through:
        raise NondeterminismError(
            f"run {ctx.run_id}: its recorded session summary covers turns through "
            f"{data.get('through')}, but the session now needs one through {through}"
        )
    ctx.charge(Usage(*data.get("usage", (0, 0, 0.0, 1, 0))))
    return str(data["text"])


async def _summarise(ctx: RunContext, plan: HistoryPlan, through: str) -> str:
    """Ask the summary model (through the gateway) to fold the plan's turns."""
    agent = ctx.spec.agent_spec
    policy = agent.memory.session
    name = policy.summary_model or agent.model
    spec = ctx.spec.models[name]
    request = summary_request(spec.model or name, plan.base, plan.fold, policy.summary_words)
    via = ModelChain.of(
        name, ctx.spec.models, ctx.client_for, agent.loop.retry, agent.loop.step_timeout_s
    )
    record = {"kind": SUMMARY_STEP, "through": through, "turns": len(plan.fold)}
    record["kept"] = len(plan.kept)
    response, _ = await model_step(ctx, ctx.next_step(), via, request, record=record)
    return (response.content or "").strip()


def summary_of(events: Sequence[Event]) -> Summary | None:
    """The session summary a run started from, if it made one."""
    folded: dict[int, str] = {}  # summary steps: what they fold through
    for event in events:
        if event.type == ev.MEMORY_SUMMARY:
            return Summary(str(event.data["text"]), str(event.data["through"]))
        if event.step is None:
            continue
        if event.type == ev.MODEL_CALL and event.data.get("kind") == SUMMARY_STEP:
            folded[event.step] = str(event.data.get("through"))
        elif event.type == ev.MODEL_RESULT and event.step in folded:
            text = ModelResponse.from_dict(event.data).content or ""
            return Summary(text.strip(), folded[event.step])
    return None
