"""Idempotency keys: the one type that makes every key a tool or child run receives.

A key names one step's effect, not one attempt at it: every retry of the step,
every resume after a crash and every takeover by another worker sends the same
key, so the receiving side can make the effect happen once. Two kinds of step
have keys:

- a tool call of the reasoning loop: ``RUN:STEP:CALL`` (the run, the step that
  performs the call, the call id the model gave it); an agent tool's child run
  is submitted with this key too;
- a node instance of a team run: ``RUN/NODE/ROUND/ITEM`` (the team run, the
  node, the round of a loop, the map item). A team-level retry of the node is
  another attempt at the same instance, so it sends the same key.

No key holds an attempt number.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepKey"]


@dataclass(frozen=True, slots=True)
class StepKey:
    """What identifies one step's effect across retries and resumes; ``str()`` is the key.

    Build one with :meth:`tool_call` or :meth:`node_instance`.
    """

    run_id: str
    step: int = 0
    call_id: str = ""
    node: str | None = None
    round: int = 1
    item: int = 0

    @classmethod
    def tool_call(cls, run_id: str, step: int, call_id: str) -> StepKey:
        """The key of a loop tool call: ``run:step:call``."""
        return cls(run_id, step, call_id)

    @classmethod
    def node_instance(cls, run_id: str, node: str, round: int, item: int) -> StepKey:
        """The key of a team node instance: ``run/node/round/item``, the same on every attempt."""
        return cls(run_id, node=node, round=round, item=item)

    @property
    def local(self) -> str:
        """The key without its run: what tells this step apart inside its run."""
        if self.node is not None:
            return f"{self.node}/{self.round}/{self.item}"
        return f"{self.step}:{self.call_id}"

    def __str__(self) -> str:
        if self.node is not None:
            return f"{self.run_id}/{self.node}/{self.round}/{self.item}"
        return f"{self.run_id}:{self.step}:{self.call_id}"
