"""The JSON of A2A's JSON-RPC binding, in both dialects the server speaks: 1.0 (the
ProtoJSON of the protocol's messages: ``SendMessage``, ``TASK_STATE_COMPLETED``,
``{"task": ...}``) and 0.3 (``message/send``, ``completed``, objects with a
``kind``).

Requests are read leniently, as the protocol's own SDKs read them: unknown
fields are ignored (a client of a later minor version may send fields this
one does not know), either spelling of a field name is taken
(``messageId`` or ``message_id``), and each refusal names the field. Replies
leave out what is unset, as ProtoJSON does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from agentrt import _json
from agentrt.server.a2a_tasks import State, TaskView

__all__ = [
    "BUDGET_EXHAUSTED",
    "CONTENT_TYPE_NOT_SUPPORTED",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LEGACY",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PUSH_NOT_SUPPORTED",
    "TASK_NOT_CANCELABLE",
    "TASK_NOT_FOUND",
    "UNSUPPORTED",
    "V1",
    "VERSION_NOT_SUPPORTED",
    "Dialect",
    "Incoming",
    "ListQuery",
    "RpcError",
    "parse_list",
    "parse_send",
    "parse_task_ref",
    "task_not_found",
]

# JSON-RPC 2.0's codes, and A2A's own (-32001 to -32009).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TASK_NOT_FOUND: Final = -32001
TASK_NOT_CANCELABLE: Final = -32002
PUSH_NOT_SUPPORTED: Final = -32003
UNSUPPORTED: Final = -32004
CONTENT_TYPE_NOT_SUPPORTED: Final = -32005
VERSION_NOT_SUPPORTED: Final = -32009
# A server error of agentrt's own (JSON-RPC leaves -32000 to -32099 to servers).
BUDGET_EXHAUSTED: Final = -32050


class RpcError(Exception):
    """A JSON-RPC error answer: its code, message and (optional) data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """The JSON-RPC error object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def task_not_found() -> RpcError:
    """The one answer for a task that does not exist, is another agent's or another
    tenant's: it never repeats the id."""
    return RpcError(TASK_NOT_FOUND, "no task with this id at this agent in the key's tenant")


# --- requests -----------------------------------------------------------------------


class _Wire(BaseModel):
    # Unknown fields are ignored, as the protocol's SDKs do, for clients of later versions.
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class _Part(_Wire):
    kind: str | None = None  # 0.3: text, data, file
    text: str | None = None
    data: Any = None
    url: str | None = None  # 1.0 file parts
    raw: str | None = None
    file: dict[str, Any] | None = None  # 0.3 file parts


class _Message(_Wire):
    message_id: str = Field(min_length=1, max_length=200)
    context_id: str | None = Field(default=None, min_length=1, max_length=253)
    task_id: str | None = Field(default=None, min_length=1, max_length=253)
    role: str | int
    parts: list[_Part] = Field(min_length=1, max_length=100)


class _SendConfig(_Wire):
    accepted_output_modes: list[str] | None = None
    history_length: int | None = Field(default=None, ge=0)
    return_immediately: bool = False  # 1.0
    blocking: bool | None = None  # 0.3


class _Send(_Wire):
    message: _Message
    configuration: _SendConfig = Field(default_factory=_SendConfig)


class _TaskRef(_Wire):
    id: str = Field(min_length=1, max_length=253)
    history_length: int | None = Field(default=None, ge=0)


class _List(_Wire):
    context_id: str | None = Field(default=None, min_length=1, max_length=253)
    status: str | int | None = None
    page_size: int = Field(default=50, ge=1, le=100)
    page_token: str = Field(default="", max_length=500)
    history_length: int | None = Field(default=None, ge=0)
    status_timestamp_after: datetime | None = None
    include_artifacts: bool = False


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message sent to the agent, in either dialect, as the server acts on it."""

    message_id: str
    context_id: str | None
    task_id: str | None
    text: str
    accepted_output_modes: tuple[str, ...]
    history_length: int | None
    return_immediately: bool


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A ``ListTasks`` request."""

    context_id: str | None
    state: str | None  # in 0.3 spelling; one no agentrt task is in (rejected) matches none
    page_size: int
    page_token: str
    history_length: int | None
    updated_after: float | None
    include_artifacts: bool


def _parse(model: type[_Wire], params: Any) -> Any:
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params: give an object")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        issues = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        first = issues[0]
        raise RpcError(
            INVALID_PARAMS, f"params.{first['field']}: {first['message']}", {"issues": issues}
        ) from None


_USER_ROLES: Final = ("ROLE_USER", 1, "user")


def _part_text(part: _Part, where: str) -> str:
    if part.text is not None and part.kind in (None, "text"):
        return part.text
    if "data" in part.model_fields_set and part.kind in (None, "data"):
        return _json.dumps_str(part.data)
    if part.url is not None or part.raw is not None or part.file is not None:
        raise RpcError(
            CONTENT_TYPE_NOT_SUPPORTED,
            f"{where}: files are not taken; send text (text/plain) or data (application/json)",
        )
    raise RpcError(INVALID_PARAMS, f"{where}: a part holds `text` or `data`")


def parse_send(params: Any, dialect: Dialect) -> Incoming:
    """A ``SendMessage`` (``message/send``) request's message and configuration."""
    send: _Send = _parse(_Send, params)
    message = send.message
    if message.role not in _USER_ROLES:
        role = "ROLE_USER" if dialect is V1 else "user"
        raise RpcError(INVALID_PARAMS, f"params.message.role: a message to the agent is {role}'s")
    text = "\n".join(
        _part_text(part, f"params.message.parts.{i}") for i, part in enumerate(message.parts)
    )
    if not text.strip():
        raise RpcError(INVALID_PARAMS, "params.message.parts: the message says nothing")
    config = send.configuration
    immediately = config.blocking is False if dialect is LEGACY else config.return_immediately
    return Incoming(
        message.message_id, message.context_id, message.task_id, text,
        tuple(config.accepted_output_modes or ()), config.history_length, immediately,
    )  # fmt: skip


def parse_task_ref(params: Any) -> tuple[str, int | None]:
    """A task's id (and history length) from ``GetTask``, ``CancelTask``, ``SubscribeToTask``."""
    ref: _TaskRef = _parse(_TaskRef, params)
    return ref.id, ref.history_length


# Every state of the protocol by its enum number; agentrt tasks are never in the last two.
_STATE_NUMBERS: Final[dict[int, str]] = {
    1: "submitted", 2: "working", 3: "completed", 4: "failed", 5: "canceled",
    6: "input-required", 7: "rejected", 8: "auth-required",
}  # fmt: skip


def _v1_state(state: str) -> str:
    return "TASK_STATE_" + state.upper().replace("-", "_")


def _state_named(value: str | int) -> str | None:
    """The state a ``ListTasks`` filter names, in 0.3 spelling (``None``: any)."""
    if value in (0, "TASK_STATE_UNSPECIFIED"):
        return None
    if isinstance(value, int):
        found = _STATE_NUMBERS.get(value)
    else:
        found = next((s for s in _STATE_NUMBERS.values() if _v1_state(s) == value), None)
    if found is None:
        raise RpcError(
            INVALID_PARAMS,
            f"params.status: {value!r} is no task state; one of "
            + ", ".join(_v1_state(s) for s in _STATE_NUMBERS.values()),
        )
    return found


def parse_list(params: Any) -> ListQuery:
    """A ``ListTasks`` request."""
    query: _List = _parse(_List, {} if params is None else params)
    after = query.status_timestamp_after
    return ListQuery(
        query.context_id,
        None if query.status is None else _state_named(query.status),
        query.page_size,
        query.page_token,
        query.history_length,
        None if after is None else after.timestamp(),
        query.include_artifacts,
    )


# --- replies --------------------------------------------------------------------------


def timestamp(ts: float) -> str:
    """A time as A2A writes it: RFC 3339 in UTC, to the millisecond."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one protocol version spells tasks, messages and stream events."""

    version: Literal["1.0", "0.3"]

    @property
    def legacy(self) -> bool:
        """Whether this is protocol 0.3."""
        return self.version == "0.3"

    def state(self, state: State) -> str:
        """A task state: ``TASK_STATE_INPUT_REQUIRED`` (1.0), ``input-required`` (0.3)."""
        return state if self.legacy else _v1_state(state)

    def _kind(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, **body} if self.legacy else body

    def message(self, message_id: str, role: str, text: str, view: TaskView) -> dict[str, Any]:
        """A message of the task's history (``role``: user or agent)."""
        part = {"kind": "text", "text": text} if self.legacy else {"text": text}
        return self._kind("message", {
            "messageId": message_id,
            "contextId": view.context_id,
            "taskId": view.id,
            "role": role if self.legacy else f"ROLE_{role.upper()}",
            "parts": [part],
        })  # fmt: skip

    def status(self, view: TaskView) -> dict[str, Any]:
        """A task's status: its state, since when, and why where there is a why."""
        status: dict[str, Any] = {"state": self.state(view.state)}
        if view.note:
            status["message"] = self.message(f"{view.id}-{view.seq}", "agent", view.note, view)
        status["timestamp"] = timestamp(view.updated)
        return status

    def artifact(self, view: TaskView) -> dict[str, Any]:
        """The task's answer as its one artifact."""
        part = {"kind": "text", "text": view.answer} if self.legacy else {"text": view.answer}
        return {"artifactId": f"{view.id}-answer", "name": "answer", "parts": [part]}

    def task(
        self, view: TaskView, *, history: int | None = None, artifacts: bool = True
    ) -> dict[str, Any]:
        """The task; ``history``: at most that many of its messages (``None``: all)."""
        task: dict[str, Any] = {"id": view.id, "contextId": view.context_id}
        task["status"] = self.status(view)
        if artifacts and view.answer is not None:
            task["artifacts"] = [self.artifact(view)]
        said = []
        if view.question is not None:
            said.append(self.message(view.question_id, "user", view.question, view))
        if view.answer is not None:
            said.append(self.message(f"{view.id}-answer", "agent", view.answer, view))
        if history != 0 and said:
            task["history"] = said if history is None else said[-history:]
        return self._kind("task", task)

    def sent(self, task: dict[str, Any]) -> dict[str, Any]:
        """``SendMessage``'s result: ``{"task": ...}`` (1.0), the task itself (0.3)."""
        return task if self.legacy else {"task": task}

    def task_item(self, view: TaskView) -> dict[str, Any]:
        """A stream's first item: the task as it is."""
        return self.sent(self.task(view))

    def status_item(self, view: TaskView) -> dict[str, Any]:
        """A stream item saying the task's status changed."""
        update: dict[str, Any] = {"taskId": view.id, "contextId": view.context_id}
        update["status"] = self.status(view)
        if self.legacy:  # 0.3 marks the last event of a stream
            update["final"] = view.terminal or view.state == "input-required"
            return self._kind("status-update", update)
        return {"statusUpdate": update}

    def artifact_item(self, view: TaskView) -> dict[str, Any]:
        """A stream item carrying the task's answer, whole."""
        update = {"taskId": view.id, "contextId": view.context_id,
                  "artifact": self.artifact(view), "lastChunk": True}  # fmt: skip
        if self.legacy:
            return self._kind("artifact-update", {**update, "append": False})
        return {"artifactUpdate": update}


V1: Final = Dialect("1.0")
LEGACY: Final = Dialect("0.3")
