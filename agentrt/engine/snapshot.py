"""The frozen description of what a run executes, recorded when the run is created.

A run keeps the specs it started with even if the resources are re-applied
later, so resume and replay see exactly what the first attempt saw.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agentrt.spec.resources import AgentSpec, Budgets, ModelSpec, ToolSpec

__all__ = ["RunSpec"]


class RunSpec(BaseModel):
    """Agent, models (primary and fallbacks), tools and effective budgets of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    namespace: str
    agent_spec: AgentSpec
    models: dict[str, ModelSpec]
    tools: dict[str, ToolSpec]
    budgets: Budgets

    def to_data(self) -> dict[str, Any]:
        """Compact JSON form for the event log (defaults omitted)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_data`."""
        return cls.model_validate(data)

    def model_chain(self) -> list[str]:
        """The agent's model followed by its fallbacks, without repeats."""
        chain = [self.agent_spec.model]
        for name in self.models[self.agent_spec.model].fallbacks:
            if name not in chain:
                chain.append(name)
        return chain
