"""The embedded runtime: its public API.

Code outside the engine imports only these names (and the event names in
:mod:`agentrt.engine.events`); the engine's other modules are internal and may
move (``tests/test_layers.py`` holds every caller to that).
"""

from agentrt.engine.agent_loop import RunContext, StepInfo
from agentrt.engine.budget_raise import BudgetAddition
from agentrt.engine.cache_hits import CacheHits, CacheReport, cache_report
from agentrt.engine.hooks import HOOK_PHASES, HookPhase, HookSet
from agentrt.engine.journal import EventObserver, LogAwareObserver
from agentrt.engine.live import Delta, LiveFeed, LiveStreams
from agentrt.engine.model_routing import RouteQuery
from agentrt.engine.queue_places import QueuePlace, places_of
from agentrt.engine.result import RunResult
from agentrt.engine.roster import LiveWorker, live_workers
from agentrt.engine.run_view import RunView, event_dict, read_run, run_summary
from agentrt.engine.runtime import Runtime
from agentrt.engine.serving import Serving, ServingState
from agentrt.engine.session_view import SessionState, SessionView, TurnView

__all__ = [
    # the runtime and what a run returns
    "Runtime",
    "RunResult",
    # what raising a run stopped at its budgets adds (Runtime.resume(add_budget=))
    "BudgetAddition",
    "QueuePlace",
    "places_of",
    # a runtime as a worker of the queue
    "Serving",
    "ServingState",
    # the workers serving a store
    "LiveWorker",
    "live_workers",
    # the read model of a run, as every reader shows it
    "RunView",
    "event_dict",
    "read_run",
    "run_summary",
    # the read model of a session
    "SessionState",
    "SessionView",
    "TurnView",
    # how much of the prompts the providers' prefix caches served
    "CacheHits",
    "CacheReport",
    "cache_report",
    # hooks, and what they receive
    "HOOK_PHASES",
    "HookPhase",
    "HookSet",
    "RunContext",
    "StepInfo",
    # what a routing classifier hook is asked about (HookSet.register)
    "RouteQuery",
    # observers of a run's events
    "EventObserver",
    "LogAwareObserver",
    # listeners to a run's model replies as they are written (never recorded)
    "Delta",
    "LiveFeed",
    "LiveStreams",
]
