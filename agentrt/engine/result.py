"""The outcome of a run as returned to callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentrt.state.base import RunStatus, Usage

__all__ = ["RunResult"]


@dataclass(frozen=True)
class RunResult:
    """Final (or, for ``waiting``, current) state of a run."""

    run_id: str
    status: RunStatus
    output: str | None
    reason: str | None
    usage: Usage
    steps: int = 0
    child_runs: int = 0  # started by its agent tools, their own children included

    @property
    def ok(self) -> bool:
        """True if the run succeeded."""
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json`` output, HTTP)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "output": self.output,
            "reason": self.reason,
            "steps": self.steps,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cost_usd": round(self.usage.cost_usd, 8),
                "model_calls": self.usage.model_calls,
                "tool_calls": self.usage.tool_calls,
            },
        }
