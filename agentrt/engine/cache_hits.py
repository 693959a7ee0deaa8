"""How much of the prompts the providers' prefix caches served, per Agent and per Model.

Each model step records the prompt tokens of its call (``in`` on ``model.result``)
and, when the provider reports them, the tokens its prefix cache served
(``cached``, from OpenAI's ``usage.prompt_tokens_details.cached_tokens``). The hit
rate of a group of steps is their cached tokens over their prompt tokens. Steps
replayed from the log are counted once, where they were recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentrt.engine import events as ev
from agentrt.state.base import Event, Store

__all__ = ["CacheHits", "CacheReport", "cache_report"]


@dataclass(slots=True)
class CacheHits:
    """The model steps of one Agent or Model: prompt tokens, cached ones, steps."""

    steps: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        """Cached tokens over prompt tokens (0 without any prompt token)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def add(self, prompt_tokens: int, cached_tokens: int) -> None:
        """Count one model step."""
        self.steps += 1
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens


@dataclass(slots=True)
class CacheReport:
    """The hit rates of the runs read: by Agent (the run's target) and by Model."""

    runs: int = 0
    by_agent: dict[str, CacheHits] = field(default_factory=dict)
    by_model: dict[str, CacheHits] = field(default_factory=dict)

    def count_run(self, agent: str, events: Sequence[Event]) -> None:
        """Count the model steps of one run of ``agent``."""
        self.runs += 1
        models: dict[int | None, str] = {}
        for event in events:
            if event.type == ev.MODEL_CALL:
                models[event.step] = str(event.data.get("model"))
            elif event.type == ev.MODEL_RESULT:
                prompt, cached = int(event.data.get("in", 0)), int(event.data.get("cached", 0))
                model = str(event.data.get("via") or models.get(event.step) or "?")
                self.by_agent.setdefault(agent, CacheHits()).add(prompt, cached)
                self.by_model.setdefault(model, CacheHits()).add(prompt, cached)


async def cache_report(
    store: Store, *, namespace: str, agent: str | None = None, limit: int = 1000
) -> CacheReport:
    """The hit rates of the ``limit`` newest runs of ``namespace`` (of ``agent`` only,
    when given)."""
    report = CacheReport()
    for run in await store.list_runs(namespace=namespace, agent=agent, limit=limit):
        report.count_run(run.agent, await store.read_events(run.id))
    return report
