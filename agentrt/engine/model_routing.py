"""Which Model each model step of an agent run asks, by its Agent's ``routing``: rules,
then escalation through cost tiers when an answer fails the check; every decision
recorded on its step, and read back, never made again, on resume, replay and fork.

A new step is routed before it reserves: the first rule whose ``when`` holds
(the query's input length, its tags, the label a classifier hook gives it)
picks the Model, else the Agent's ``model``. The step then goes through that
Model's own chain as any step does: its fallbacks on errors, the circuits of
their endpoints, degrading while a Budget runs low
(:mod:`agentrt.engine.gateway`). The decision goes with the step's intent,
``routing: {model, by: rule|default, [rule], [label]}``.

An answer (a reply without tool calls) is checked when the Agent has tiers: it
must match ``matches``, parse as JSON, be valid against ``json_schema``, and
pass the check ``hook``, all those given. The verdict is a ``model.checked``
event of the step, ``{model, passed, [why], [escalate_to], [accepted]}``. A
failed answer is dropped from the conversation and the same request goes, as a
new step, to the tier after the step's Model (``routing: {model, by:
escalated, from: {step, model, why}}``); the run's later steps stay on that
tier (``by: tier``). The last tier's failed answer fails the run
(``check_failed``) or, with ``on_last_failure: accept``, stands.

Hooks are named, not imported: the embedding program registers them on the
Runtime (:meth:`~agentrt.engine.hooks.HookSet.register`). A classifier is
``fn(query: RouteQuery) -> str | None`` (the label); a check is ``fn(answer: str)
-> bool | str | None`` (``False`` or a reason: it fails). Either may be async. A
live run whose Agent names a hook nobody registered fails before its first step
(``start_failed``), saying which field names it. Replay calls no hook: every
decision and verdict comes from the log.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

from agentrt.engine import events as ev
from agentrt.engine.hooks import HookSet
from agentrt.engine.journal import Journal, LogEnds
from agentrt.engine.plans import RunSpec
from agentrt.errors import CheckFailed, StartError
from agentrt.spec.patterns import search
from agentrt.spec.routing_spec import AnswerCheck, RouteWhen, Routing

__all__ = ["RouteQuery", "StepRouter"]


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """What a classifier hook is asked about: the query of the step it routes."""

    input: str
    tags: tuple[str, ...]
    agent: str
    namespace: str
    step: int


class StepRouter:
    """The Model of each of one run's loop model steps, and the checks of its answers."""

    def __init__(self, spec: RunSpec, journal: Journal, hooks: HookSet, input: str) -> None:
        """The router of a run of ``spec`` with query ``input``.

        Raises:
            StartError: a live run's routing names a hook that is not registered.
        """
        self._spec = spec
        self._routing: Routing | None = spec.agent_spec.routing
        self._journal = journal
        self._hooks = hooks
        self._input = input
        self._tier: str | None = None  # the tier escalated to: the run's later steps stay
        self._escalated: dict[str, Any] | None = None  # the next step's decision
        if self._routing is not None and not journal.replay:
            _check_hooks(self._routing, hooks)

    async def model_for(self, step: int) -> tuple[str, dict[str, Any] | None]:
        """The Model step ``step`` asks, and the decision to record with its intent
        (``None``: no routing, or the step's intent already has it)."""
        routing, default = self._routing, self._spec.agent_spec.model
        if routing is None:
            return default, None
        rec = self._journal.recorded(step)
        if rec is not None and rec.intent is not None:  # decided when the step began
            decided = rec.intent.data.get("routing") or {}
            name = str(decided.get("model", rec.intent.data["model"]))
            if decided.get("by") in ("tier", "escalated"):
                self._tier = name
            self._escalated = None
            return name, None
        if self._escalated is not None:
            decided, self._escalated = self._escalated, None
            return str(decided["model"]), decided
        if self._tier is not None:
            return self._tier, {"model": self._tier, "by": "tier"}
        if self._journal.replay:  # nothing recorded: the journal says so at the step
            return default, None
        labels: dict[str, str | None] = {}  # one call of each classifier per step
        for i, rule in enumerate(routing.rules):
            if await self._holds(rule.when, step, labels):
                decided = {"model": rule.model, "by": "rule", "rule": i}
                if rule.when.classifier is not None:
                    decided["label"] = rule.when.label
                return rule.model, decided
        return default, {"model": default, "by": "default"}

    async def _holds(self, when: RouteWhen, step: int, labels: dict[str, str | None]) -> bool:
        """Whether the query is as ``when`` says."""
        size = len(self._input)
        if when.min_input_chars is not None and size < when.min_input_chars:
            return False
        if when.max_input_chars is not None and size > when.max_input_chars:
            return False
        if not set(when.tags) <= set(self._spec.tags):
            return False
        if when.classifier is None:
            return True
        if when.classifier not in labels:
            query = RouteQuery(
                self._input, tuple(self._spec.tags), self._spec.agent, self._spec.namespace, step
            )
            label = await _call(self._hooks.named[when.classifier], query)
            labels[when.classifier] = None if label is None else str(label)
        return labels[when.classifier] == when.label

    async def escalates(self, step: int, model: str, answer: str) -> bool:
        """Whether the answer of step ``step`` (asked of ``model``) fails the routing
        check and goes to the next tier; the verdict is recorded, or read back.

        Raises:
            CheckFailed: the last tier's answer failed (``on_last_failure: fail``).
            LogEnds: replay reached an answer whose check the log never recorded.
        """
        routing = self._routing
        if routing is None or routing.check is None:
            return False
        rec = self._journal.recorded(step)
        if rec is not None and rec.checked is not None:
            verdict = rec.checked.data
        elif self._journal.replay:
            raise LogEnds(f"step {step}: the run stopped before its answer was checked")
        else:
            verdict = await self._verdict(routing, routing.check, model, answer)
            await self._journal.append(ev.MODEL_CHECKED, verdict, step=step, durable=False)
        if verdict["passed"] or verdict.get("accepted"):
            return False
        to = verdict.get("escalate_to")
        if to is None:
            raise CheckFailed(
                f"step {step}: the answer of {model!r}, the last of routing.tiers, failed "
                f"routing.check: {verdict['why']}; set routing.check.on_last_failure: accept "
                "to keep such an answer, or add a tier"
            )
        came = {"step": step, "model": model, "why": verdict["why"]}
        self._tier = str(to)
        self._escalated = {"model": to, "by": "escalated", "from": came}
        return True

    async def _verdict(
        self, routing: Routing, check: AnswerCheck, model: str, answer: str
    ) -> dict[str, Any]:
        """What the check says of ``answer``, and where a failed one goes."""
        why = await _why_not(check, answer, self._hooks)
        if why is None:
            return {"model": model, "passed": True}
        tiers = list(routing.tiers)
        at = tiers.index(model) + 1 if model in tiers else 0
        verdict: dict[str, Any] = {"model": model, "passed": False, "why": why}
        if at < len(tiers):
            verdict["escalate_to"] = tiers[at]
        else:
            verdict["accepted"] = check.on_last_failure == "accept"
        return verdict


async def _why_not(check: AnswerCheck, answer: str, hooks: HookSet) -> str | None:
    """Why ``answer`` fails ``check`` (the first check it fails), or ``None``."""
    if check.matches is not None and not search(check.matches, answer):
        return f"it does not match routing.check.matches {check.matches!r}"
    if check.parses_as_json or check.json_schema is not None:
        try:
            parsed = json.loads(answer)
        except ValueError as exc:
            return f"it is not JSON ({exc})"
        if check.json_schema is not None:
            from jsonschema.exceptions import best_match
            from jsonschema.validators import validator_for

            validator = validator_for(check.json_schema)(check.json_schema)
            error = best_match(validator.iter_errors(parsed))
            if error is not None:
                at = "/".join(str(p) for p in error.absolute_path) or "the top"
                return f"it is not valid against routing.check.json_schema at {at}: {error.message}"
    if check.hook is not None:
        said = await _call(hooks.named[check.hook], answer)
        if said is False:
            return f"check hook {check.hook!r} refused it"
        if isinstance(said, str):
            return f"check hook {check.hook!r}: {said}"
    return None


async def _call(fn: Any, value: Any) -> Any:
    """A named hook's answer, sync or async."""
    result = fn(value)
    if inspect.isawaitable(result):
        result = await result
    return result


def _check_hooks(routing: Routing, hooks: HookSet) -> None:
    """Raise :class:`StartError` naming each field that names a hook nobody registered."""
    named = [
        (f"routing.rules[{i}].when.classifier", rule.when.classifier)
        for i, rule in enumerate(routing.rules)
        if rule.when.classifier is not None
    ]
    if routing.check is not None and routing.check.hook is not None:
        named.append(("routing.check.hook", routing.check.hook))
    missing = [(field, name) for field, name in named if name not in hooks.named]
    if missing:
        known = ", ".join(sorted(hooks.named)) or "none"
        said = "; ".join(f"{field}: {name!r}" for field, name in missing)
        raise StartError(
            f"the Agent's routing names a hook not registered on the Runtime ({said}; "
            f"registered: {known}); register it in the program that runs the agent with "
            "Runtime.register_hook(NAME, fn), or name one that is registered"
        )
