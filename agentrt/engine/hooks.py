"""User hooks at each phase of the reasoning loop.

A hook is ``hook(ctx, value)``, sync or async. It may return a replacement
for ``value`` (e.g. an edited ``ModelRequest``) or ``None`` to keep it. A
``before_tool`` hook may raise ``ToolError`` to deny a call; the model sees the
message. Hooks run again on replay and resume, so they must be deterministic
(like the rest of the loop): read the time with ``ctx.now()`` and make ids with
``ctx.new_id()``, never with the clock or randomness. Those two are recorded in
the run's log the first time and returned from it on resume and replay.

Every model and tool call of a run passes these hooks: the loop's steps, a
session summary (``before_model``/``after_model``), and a team run's own steps,
its routes' model calls and its tool nodes (with the runtime's hooks; ``ctx``
is then the team's context).

Named hooks are another kind: a routing classifier or an answer check that an
Agent's ``routing`` names (see :mod:`agentrt.engine.model_routing`). The program
that embeds the runtime registers them (:meth:`HookSet.register`); a spec only
names one, so a tenant's spec never makes the server import its code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from agentrt._imports import import_callable
from agentrt.spec.resources import Hooks

__all__ = ["HOOK_PHASES", "HookPhase", "HookSet"]

HookPhase = Literal[
    "before_model", "after_model", "before_tool", "after_tool", "on_step", "on_finish"
]
HOOK_PHASES: tuple[str, ...] = get_args(HookPhase)
T = TypeVar("T")


@dataclass(frozen=True)
class HookSet:
    """Hooks per phase, called in registration order, and named hooks that specs name."""

    hooks: dict[str, tuple[Callable[..., Any], ...]] = field(default_factory=dict)
    named: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def add(self, phase: HookPhase, fn: Callable[..., Any]) -> HookSet:
        """A new HookSet with ``fn`` appended to ``phase``."""
        if phase not in HOOK_PHASES:
            raise ValueError(f"unknown hook phase {phase!r}; use one of {', '.join(HOOK_PHASES)}")
        return HookSet({**self.hooks, phase: (*self.hooks.get(phase, ()), fn)}, self.named)

    def register(self, name: str, fn: Callable[..., Any]) -> HookSet:
        """A new HookSet with ``fn`` as the hook named ``name`` (replacing one of that name),
        which an Agent's ``routing`` may name as a classifier or an answer check."""
        return HookSet(self.hooks, {**self.named, name: fn})

    def merged(self, other: HookSet) -> HookSet:
        """Our hooks, then ``other``'s, per phase; named ones of ``other`` win."""
        phases = set(self.hooks) | set(other.hooks)
        merged = {p: self.hooks.get(p, ()) + other.hooks.get(p, ()) for p in phases}
        return HookSet(merged, {**self.named, **other.named})

    @property
    def empty(self) -> bool:
        """Whether it has no hook at all."""
        return not self.hooks and not self.named

    def has(self, phase: HookPhase) -> bool:
        """Whether any hook is registered for ``phase``."""
        return phase in self.hooks and bool(self.hooks[phase])

    @classmethod
    def from_spec(cls, spec: Hooks) -> HookSet:
        """Import the ``module:function`` hooks named in an Agent spec."""
        result = cls()
        for phase in HOOK_PHASES:
            ref = getattr(spec, phase)
            if ref:
                result = result.add(phase, import_callable(ref, what=f"hook {phase}"))  # type: ignore[arg-type]
        return result

    async def run(self, phase: HookPhase, ctx: Any, value: T) -> T:
        """Call the phase's hooks in order, threading replacements through."""
        for fn in self.hooks.get(phase, ()):
            result = fn(ctx, value)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                value = result
        return value
