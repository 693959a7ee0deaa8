"""The reasoning loop, durable steps, and the embedded runtime."""

from agentrt.engine.execute import Executor
from agentrt.engine.hooks import HOOK_PHASES, HookPhase, HookSet
from agentrt.engine.journal import EventObserver, Journal, LogAwareObserver, StepUnknown
from agentrt.engine.loop import LoopOutcome, RunContext, StepInfo, run_loop
from agentrt.engine.result import RunResult
from agentrt.engine.runtime import Runtime, new_run_id
from agentrt.engine.snapshot import RunSpec

__all__ = [
    # runtime
    "Runtime",
    "RunResult",
    "new_run_id",
    # loop and durable steps
    "EventObserver",
    "Executor",
    "Journal",
    "LogAwareObserver",
    "LoopOutcome",
    "RunContext",
    "RunSpec",
    "StepInfo",
    "StepUnknown",
    "run_loop",
    # hooks
    "HOOK_PHASES",
    "HookPhase",
    "HookSet",
]
