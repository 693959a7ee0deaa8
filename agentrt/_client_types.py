"""The typed values of agentrt's HTTP API as :mod:`agentrt.client` returns them.

Each is read from the API's JSON by its ``from_dict``; none needs the engine
or a store, so a program that only talks to a server imports no more.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrt.errors import AgentrtError

__all__ = [
    "DELTA",
    "FINISHED",
    "ApiError",
    "DeletedSession",
    "ModelDelta",
    "Resource",
    "Run",
    "RunArchive",
    "RunDetail",
    "RunEvent",
    "RunOutcome",
    "RunPage",
    "Session",
    "SessionDetail",
    "SessionPage",
    "StreamEvent",
    "Submission",
    "Turn",
    "Usage",
]

DELTA = "model.delta"
"""The type of a live piece of a model's reply."""
FINISHED = "run.finished"
"""The type of a run's last event."""


class ApiError(AgentrtError):
    """The server refused a request, or did not answer (``status`` 0).

    Attributes:
        status: The HTTP status (0: no answer: refused connection, timeout).
        code: The API's error code (``not_found``, ``invalid``, ``unreachable``, ...).
        message: What went wrong, as the server said it.
        issues: One dict per problem (``field``, ``message``; a resource's also
            ``document``, ``resource`` and ``fix``).
        param: The request field the error is about, if one.
        retry_after: Seconds to wait before trying again (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        issues: Sequence[Mapping[str, Any]] = (),
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = [dict(i) for i in issues]
        self.param = param
        self.retry_after = retry_after


@dataclass(frozen=True)
class Usage:
    """What a run consumed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage:
        """The usage of the API's JSON."""
        d = data or {}
        return cls(
            int(d.get("input_tokens", 0)), int(d.get("output_tokens", 0)),
            float(d.get("cost_usd", 0.0)), int(d.get("model_calls", 0)),
            int(d.get("tool_calls", 0)),
        )  # fmt: skip


@dataclass(frozen=True)
class Run:
    """A run's row: who it runs, its status and usage, where it belongs."""

    id: str
    namespace: str
    agent: str
    status: str
    created_at: float
    reason: str | None = None
    session: str | None = None
    turn: int | None = None
    finished_at: float | None = None
    parent_run: str | None = None
    fork_step: int | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    usage: Usage = field(default_factory=Usage)
    principal: str | None = None  # who started it: an API key's ``key:NAME``
    cancel_requested: bool = False
    cancel_by: str | None = None
    cancel_cause: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Run:
        """The run of the API's JSON."""
        return cls(
            id=d["id"], namespace=d["namespace"], agent=d["agent"], status=d["status"],
            created_at=float(d["created_at"]), reason=d.get("reason"), session=d.get("session"),
            turn=d.get("turn"), finished_at=d.get("finished_at"), parent_run=d.get("parent_run"),
            fork_step=d.get("fork_step"), lease_owner=d.get("lease_owner"),
            lease_expires=d.get("lease_expires"), usage=Usage.from_dict(d.get("usage")),
            principal=d.get("principal"), cancel_requested=bool(d.get("cancel_requested")),
            cancel_by=d.get("cancel_by"), cancel_cause=d.get("cancel_cause"),
        )  # fmt: skip

    @property
    def finished(self) -> bool:
        """True once the run ended (whatever its status)."""
        return self.finished_at is not None


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's durable log; ``seq`` numbers them 1, 2, 3, ..."""

    seq: int
    type: str
    ts: float
    data: dict[str, Any]
    step: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunEvent:
        """The event of the API's JSON."""
        return cls(
            int(d["seq"]), d["type"], float(d["ts"]), dict(d.get("data") or {}), d.get("step")
        )


@dataclass(frozen=True)
class ModelDelta:
    """A piece of a model step's reply, live (never in the log): text or tool-call fragments.

    ``after`` is the last event of the log written before the piece; a step
    whose ``attempt`` grows started over, and the text before is not its reply.
    """

    run: str
    step: int
    attempt: int
    model: str
    after: int
    text: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    type: str = DELTA

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelDelta:
        """The piece of the API's JSON."""
        return cls(
            d["run"], int(d["step"]), int(d["attempt"]), d.get("model", ""), int(d["after"]),
            d.get("text", ""), tuple(d.get("tool_calls") or ()),
        )  # fmt: skip


StreamEvent = RunEvent | ModelDelta
"""What a run's live stream yields: the log's events, and the model's pieces between them."""


@dataclass(frozen=True)
class RunDetail:
    """A run's read model: its row, step count, child runs and whole log.

    ``policy_refusals`` counts its tool calls the tenant's Policies refused;
    ``queue``, while it is queued, its ``position`` in its tenant's queue, how long
    it has been ``waiting_s`` and the ``reason`` (which limit, or a free slot).
    """

    run: Run
    steps: int
    children: tuple[str, ...]
    events: tuple[RunEvent, ...]
    policy_refusals: int = 0
    queue: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunDetail:
        """The read model of the API's JSON."""
        run = d["run"]
        return cls(
            Run.from_dict(run), int(run.get("steps", 0)), tuple(run.get("children") or ()),
            tuple(RunEvent.from_dict(e) for e in d.get("events") or ()),
            int(run.get("policy_refusals", 0)), run.get("queue"),
        )  # fmt: skip

    @property
    def last_seq(self) -> int:
        """The number of the log's last event (0: none yet)."""
        return self.events[-1].seq if self.events else 0

    @property
    def output(self) -> str | None:
        """What the run answered (``None`` unless it ended with an output)."""
        for event in reversed(self.events):
            if event.type == FINISHED:
                output = event.data.get("output")
                return output if isinstance(output, str) else None
        return None

    def outcome(self) -> RunOutcome:
        """The run's outcome, as a query waited for answers it."""
        r = self.run
        return RunOutcome(r.id, r.status, self.output, r.reason, self.steps, r.usage)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended (or, waiting for a person, where it stands)."""

    run_id: str
    status: str
    output: str | None
    reason: str | None
    steps: int
    usage: Usage

    @property
    def ok(self) -> bool:
        """True if the run succeeded."""
        return self.status == "succeeded"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunOutcome:
        """The outcome of the API's JSON."""
        return cls(
            d["run_id"], d["status"], d.get("output"), d.get("reason"), int(d.get("steps", 0)),
            Usage.from_dict(d.get("usage")),
        )  # fmt: skip


@dataclass(frozen=True)
class Submission:
    """A run a request started or continued (a query; a resume, fork or decision): the
    run as it was when the server answered, and its outcome when it was waited for
    and ended (or waits for a person again)."""

    run: Run
    outcome: RunOutcome | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Submission:
        """The answer of the API's JSON: ``{"run", "result"?}``."""
        result = d.get("result")
        return cls(Run.from_dict(d["run"]), RunOutcome.from_dict(result) if result else None)


@dataclass(frozen=True)
class RunArchive:
    """A run's whole log in the archive format (``agentrt runs export`` writes it,
    ``agentrt runs import`` reads it): ``data`` is the archive itself, as the server
    sent it; the rest is read from it."""

    format: str
    run_id: str
    namespace: str
    agent: str
    status: str
    created_at: float
    principal: str | None
    events: tuple[RunEvent, ...]
    data: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunArchive:
        """The archive of the API's JSON."""
        run = d["run"]
        return cls(
            d["format"], run["id"], run["namespace"], run["agent"], run["status"],
            float(run["created_at"]), run.get("principal"),
            tuple(RunEvent.from_dict(e) for e in d.get("events") or ()), dict(d),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The archive, to write to a file or import into a store."""
        return dict(self.data)


@dataclass(frozen=True)
class Resource:
    """A stored resource of the key's tenant, at its ``generation``."""

    kind: str
    namespace: str
    name: str
    generation: int
    body: dict[str, Any]
    created_at: float
    updated_at: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Resource:
        """The resource of the API's JSON."""
        return cls(
            d["kind"], d["namespace"], d["name"], int(d["generation"]), dict(d["resource"]),
            float(d["created_at"]), float(d["updated_at"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Session:
    """A session of the key's tenant (its id as the tenant names it) and its state:
    ``idle`` (every turn ended), ``busy`` (one is queued or running) or ``waiting``
    (one waits for a person)."""

    id: str
    namespace: str
    state: str
    turn_count: int
    created_at: float
    updated_at: float  # its turns' latest write
    parent_session: str | None = None  # the session it was forked from, if one
    parent_turn: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Session:
        """The session of the API's JSON."""
        return cls(
            d["id"], d["namespace"], d["state"], int(d["turn_count"]), float(d["created_at"]),
            float(d["updated_at"]), d.get("parent_session"), d.get("parent_turn"),
        )  # fmt: skip


@dataclass(frozen=True)
class RunPage:
    """A page of runs, newest first (in turn order for one session); ``next_cursor``
    (``None`` on the last page) asks for the next. Iterating it gives its runs."""

    items: tuple[Run, ...]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[Run]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunPage:
        """The page of the API's JSON."""
        return cls(tuple(Run.from_dict(r) for r in d.get("items") or ()), d.get("next_cursor"))


@dataclass(frozen=True)
class SessionPage:
    """A page of sessions, newest first; ``next_cursor`` (``None`` on the last page)
    asks for the next."""

    items: tuple[Session, ...]
    next_cursor: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionPage:
        """The page of the API's JSON."""
        items = tuple(Session.from_dict(s) for s in d.get("items") or ())
        return cls(items, d.get("next_cursor"))


@dataclass(frozen=True)
class Turn:
    """One turn of a session: its run, its answer, and whether later turns remember
    it (``cancel_cause``: ``interrupt`` or ``rollback`` when a newer message cancelled it)."""

    turn: int | None
    status: str
    output: str | None
    in_history: bool
    cancel_cause: str | None
    run: Run

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Turn:
        """The turn of the API's JSON."""
        return cls(
            d.get("turn"), d["status"], d.get("output"), bool(d.get("in_history")),
            d.get("cancel_cause"), Run.from_dict(d["run"]),
        )  # fmt: skip


@dataclass(frozen=True)
class SessionDetail:
    """A session and its turns, in turn order."""

    session: Session
    turns: tuple[Turn, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionDetail:
        """The session of the API's JSON, with its turns."""
        turns = tuple(Turn.from_dict(t) for t in d.get("turns") or ())
        return cls(Session.from_dict(d["session"]), turns)


@dataclass(frozen=True)
class DeletedSession:
    """What deleting a session removed: the session and its runs (turns and their children)."""

    session: str
    runs: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeletedSession:
        """The answer of the API's JSON: ``{"deleted": {"session", "runs"}}``."""
        deleted = d["deleted"]
        return cls(deleted["session"], tuple(deleted.get("runs") or ()))
