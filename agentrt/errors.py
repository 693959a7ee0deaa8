"""The error hierarchy of agentrt.

Two roots under :class:`AgentrtError`:

* :class:`UsageError`: a developer's or operator's mistake (a bad spec, a bad
  flag, an unknown run). Fix the input and try again. :class:`StoreError` and
  its kinds are the store's problems (a file that is not a store, read-only
  media, a full disk), each naming the store and what to do.
* :class:`RunError`: something that went wrong while a run executed (a model
  provider failing, a tool raising, a budget running out). These are recorded
  in the event log, so each serialises to a dict and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentrt._text import count

__all__ = [
    "AgentrtError",
    "BudgetExhausted",
    "CancelRequested",
    "CheckFailed",
    "ConflictError",
    "LeaseLost",
    "ModelError",
    "NondeterminismError",
    "NotFoundError",
    "OutputTruncated",
    "RunError",
    "SessionBusy",
    "SessionTaken",
    "SpecError",
    "SpecIssue",
    "StartError",
    "StepTimeout",
    "StoreError",
    "StoreFull",
    "StoreInvalid",
    "StoreUnavailable",
    "ToolError",
    "UsageError",
    "error_from_dict",
]


class AgentrtError(Exception):
    """Root of every error agentrt raises on purpose."""


class UsageError(AgentrtError):
    """A mistake in how agentrt was called or configured; fixable by the caller."""


class NotFoundError(UsageError):
    """A named resource, run or session does not exist."""


class ConflictError(UsageError):
    """The request conflicts with the current state (e.g. the run is owned elsewhere)."""


class SessionBusy(ConflictError):
    """A session has an unfinished turn, and what was asked needs it idle (a query
    under the ``reject`` double-texting policy, deleting the session).

    Attributes:
        session_id: The session, as the store knows it.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionTaken(ConflictError):
    """A turn asked to continue only its own principal's session, and the session was
    started by another principal (nothing is created).

    Attributes:
        session_id: The session, as the store knows it.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class StoreError(UsageError):
    """The store cannot be opened or used; the message names it, the problem and the fix.

    Attributes:
        store: The store's path (or URL) as given.
        problem: What is wrong with it, said of the store: ``"is a directory"``.
        fix: What to do about it.
    """

    def __init__(self, store: str, problem: str, fix: str) -> None:
        self.store = store
        self.problem = problem
        self.fix = fix
        shown = store if store else "path ''"
        super().__init__(f"the store {shown} {problem}; {fix}")


class StoreUnavailable(StoreError):
    """The store cannot be reached, read or written here: the path, permissions, read-only
    media, or another process's lock."""


class StoreInvalid(StoreError):
    """The file is not a store this agentrt can use: not one at all, another application's
    database, damaged, or of another schema version."""


class StoreFull(StoreError):
    """No space is left where the store lives. What was committed before is kept."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a resource file: where it is, what is wrong, how to fix it."""

    file: str
    resource: str  # "Agent/researcher" or "document 2" when the kind/name is unknown
    field_path: str  # "spec.tools[1]" ; "" for the whole document
    message: str
    fix: str
    line: int | None = None

    def render(self) -> str:
        """Render the issue as a short block that fits on one screen."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [f"{where}: {self.resource}"]
        if self.field_path:
            parts[0] += f": field {self.field_path}"
        parts.append(f"  error: {self.message}")
        parts.append(f"  fix:   {self.fix}")
        return "\n".join(parts)


class SpecError(UsageError):
    """One or more resource files are invalid. Each issue names file, field and fix."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__(self.render())

    def render(self, limit: int = 10) -> str:
        """Render up to ``limit`` issues; the rest are counted, not printed."""
        shown = [i.render() for i in self.issues[:limit]]
        more = len(self.issues) - limit
        if more > 0:
            shown.append(f"... and {count(more, 'more problem')}")
        return "\n".join(shown)


# --- errors during a run -----------------------------------------------------


class RunError(AgentrtError):
    """A failure during a run. Serialisable so it can be recorded in the event log."""

    code = "run_error"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the event log or an HTTP response."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ModelError(RunError):
    """A model provider call failed (after the client's own retries); ``timed_out``:
    its last attempt got no answer in time."""

    code = "model_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out

    def to_dict(self) -> dict[str, Any]:
        """Serialise with the HTTP status and Retry-After, when known."""
        data = {**super().to_dict(), "status": self.status, "retry_after": self.retry_after}
        if self.timed_out:
            data["timed_out"] = True
        return data


class ToolError(RunError):
    """A tool call failed. The model sees the message as the tool's result."""

    code = "tool_error"


class StepTimeout(RunError):
    """A step did not finish within the loop policy's per-step timeout."""

    code = "step_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class BudgetExhausted(RunError):
    """A budget (tokens, tool calls, cost) would be exceeded."""

    code = "budget_exhausted"


class OutputTruncated(RunError):
    """A model's reply was cut off by its output limit (``finish_reason: length``)."""

    code = "output_truncated"


class CheckFailed(RunError):
    """The answer of an Agent's last routing tier failed its ``routing.check``."""

    code = "check_failed"


class StartError(RunError):
    """A run could not start here: its tools, hooks or models could not be made ready
    (a callable that does not import, an API-key variable that is not set)."""

    code = "start_failed"


class NondeterminismError(RunError):
    """Replay asked for a step that differs from the recorded one."""

    code = "nondeterminism"


class LeaseLost(RunError):
    """Another worker now owns the run; this one must stop writing to it."""

    code = "lease_lost"


class CancelRequested(RunError):
    """The run's cancellation was requested: the store takes no write but its cancelled end."""

    code = "cancel_requested"


@dataclass
class _Registry:
    by_code: dict[str, type[RunError]] = field(default_factory=dict)


_ERRORS = _Registry(
    {
        cls.code: cls
        for cls in (
            RunError,
            ModelError,
            ToolError,
            StepTimeout,
            BudgetExhausted,
            OutputTruncated,
            CheckFailed,
            StartError,
            NondeterminismError,
            LeaseLost,
            CancelRequested,
        )
    }
)


def error_from_dict(data: dict[str, Any]) -> RunError:
    """Rebuild a :class:`RunError` recorded by :meth:`RunError.to_dict`."""
    cls = _ERRORS.by_code.get(str(data.get("code")), RunError)
    message = str(data.get("message", ""))
    if cls is ModelError:
        return ModelError(
            message,
            retryable=bool(data.get("retryable")),
            status=data.get("status"),
            retry_after=data.get("retry_after"),
            timed_out=bool(data.get("timed_out")),
        )
    if cls is StepTimeout:
        return StepTimeout(message)
    return cls(message, retryable=bool(data.get("retryable")))
