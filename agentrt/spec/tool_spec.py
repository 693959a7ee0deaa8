"""The spec of a ``Tool`` resource: its kind and that kind's section, permissions, limits,
quotas and approval."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from agentrt.spec._base import CALLABLE, Names, Strict
from agentrt.spec._checks import tool_input_schema
from agentrt.spec.network import parse_rule
from agentrt.spec.patterns import Regex

__all__ = [
    "A2aToolSpec",
    "AgentToolSpec",
    "Approval",
    "CodeToolSpec",
    "HttpToolSpec",
    "Limits",
    "McpToolSpec",
    "MemoryToolSpec",
    "Permissions",
    "Quotas",
    "ToolSpec",
]


class HttpToolSpec(Strict):
    """An HTTP endpoint called with the model's arguments."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(description="URL template: {arg} placeholders are filled from arguments")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="values may hold secrets by reference: ${env:NAME} or ${file:/path}",
    )
    body: Literal["json", "none"] = Field(
        default="json", description="send the arguments not used in the URL as a JSON body"
    )


class McpToolSpec(Strict):
    """A Model Context Protocol server whose tools are offered to the model.

    Each tool is offered under a name model APIs accept (``files.read`` becomes
    ``files_read``; a name another Tool offers too becomes ``TOOL__name``) and
    called by its own. A tool that can only run as an MCP task
    (``execution.taskSupport: required``) is left out, with a notice in the run.
    """

    command: list[str] | None = Field(default=None, description="stdio server: argv to start")
    url: str | None = Field(default=None, description="streamable HTTP server: its MCP URL")
    env: dict[str, str] = Field(
        default_factory=dict, description="for the stdio server; ${env:NAME} references allowed"
    )
    tools: Names | None = Field(
        default=None, description="offer only these of the server's tools (default: all)"
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpToolSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of `command` (stdio) or `url` (streamable HTTP)")
        return self


class A2aToolSpec(Strict):
    """A remote agent over the Agent2Agent protocol (A2A): each call is one task.

    The call sends the model's message as a task (A2A 1.0, or 0.3 where the card
    offers only that) and returns the task's answer. The message's ``messageId`` is
    the call's idempotency key, so a resumed run sends the same message again, not a
    second one: a server that recognises a message by its id (agentrt does) answers
    with the task it already started.
    """

    url: str = Field(
        pattern=r"^https?://",
        description="the agent's URL (its card is at URL/.well-known/agent-card.json) or "
        "the card's own URL (ending in .json)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="sent with every request (the card's too); values may hold secrets by "
        "reference: ${env:NAME} or ${file:/path}",
    )
    stream: bool = Field(
        default=True,
        description="follow the task as a stream when the card offers one (false: wait "
        "for the answer of SendMessage, then poll)",
    )


class CodeToolSpec(Strict):
    """Code written by the model, run in a sandbox."""

    language: Literal["python", "shell"] = "python"
    sandbox: Literal["auto", "gvisor", "bubblewrap", "process"] = Field(
        default="auto", description="auto: bubblewrap where it works, else gvisor"
    )
    allow_unsafe: bool = Field(
        default=False, description="permit the `process` backend (no isolation) for model code"
    )
    pool_size: int = Field(
        default=2, ge=0, le=64, description="ready sandboxes kept warm (0: create on demand)"
    )


class AgentToolSpec(Strict):
    """Another Agent used as a tool: each call is a child run."""

    agent: str = Field(description="name of the Agent (same namespace)")
    budget_share: float = Field(
        default=0.5, gt=0, le=1, description="share of the parent's remaining budgets it may use"
    )


class MemoryToolSpec(Strict):
    """The tenant's long-term memory as tools: ``remember`` a fact, ``recall`` by search."""

    write: bool = Field(default=True, description="offer `remember` (false: search only)")
    max_results: int = Field(default=5, ge=1, le=50, description="facts `recall` returns at most")
    tags: Names = Field(
        default_factory=list,
        description="search only facts with all these tags, and add them to what is remembered",
    )


class Permissions(Strict):
    """What a tool may reach. Enforced by the sandbox, not by trust."""

    network: Literal["none"] | list[str] = Field(
        default="none",
        description='"none" or an allow-list of "host:port" (also "*.domain:port", "[v6]:port")',
    )
    env: Names = Field(default_factory=list, description="environment variables passed in")
    read_paths: Names = Field(
        default_factory=list, description="host paths the tool may read (read-only)"
    )

    @field_validator("network")
    @classmethod
    def _rules(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            for entry in value:
                parse_rule(entry)
        return value


class Limits(Strict):
    """Resources one call may use (the wall-clock limit is ``timeout_s``)."""

    cpu_s: float | None = Field(default=10.0, gt=0)
    memory_mb: int | None = Field(default=256, gt=0)
    pids: int | None = Field(default=64, gt=0, description="processes and threads")
    output_bytes: int = Field(
        default=65536, gt=0, description="beyond this, output is truncated (kept as an artifact)"
    )
    disk_mb: int = Field(
        default=64, gt=0, le=65536, description="what one call may add to the run's scratch"
    )
    disk_files: int = Field(
        default=2000, gt=0, le=1_000_000, description="files one call may add to the scratch"
    )
    run_disk_mb: int = Field(
        default=256, gt=0, le=65536, description="what the run's scratch may hold in all"
    )
    run_disk_files: int = Field(
        default=10000, gt=0, le=1_000_000, description="files the run's scratch may hold in all"
    )


class Quotas(Strict):
    """How often a tool may be called. ``None`` means unlimited."""

    per_run: int | None = Field(default=None, ge=0)
    per_session: int | None = Field(default=None, ge=0)
    per_tenant_per_day: int | None = Field(default=None, ge=0)


class Approval(Strict):
    """When a person must approve a call before it runs."""

    required: bool = False
    when: dict[str, Regex] = Field(
        default_factory=dict,
        description="only when these arguments match these regexes (all must match)",
    )


_KIND_SECTIONS = {
    "http": "http",
    "a2a": "a2a",
    "mcp": "mcp",
    "code": "code",
    "agent": "agent",
    "memory": "memory",
}


class ToolSpec(Strict):
    """A tool the model may call."""

    kind: Literal["python", "http", "mcp", "a2a", "code", "agent", "memory"] = Field(
        description="how the tool runs"
    )
    callable: str | None = Field(
        default=None, pattern=CALLABLE, description="kind python: module:function"
    )
    http: HttpToolSpec | None = None
    mcp: McpToolSpec | None = None
    a2a: A2aToolSpec | None = None
    code: CodeToolSpec | None = None
    agent: AgentToolSpec | None = None
    memory: MemoryToolSpec | None = None
    description: str | None = Field(
        default=None, description="shown to the model; default: the docstring's first line"
    )
    input_schema: Annotated[dict[str, Any] | None, AfterValidator(tool_input_schema)] = Field(
        default=None,
        description="JSON Schema of an object (`type: object`), checked at apply; "
        "derived from the signature when absent",
    )
    idempotent: bool = Field(
        default=False, description="safe to run again with the same idempotency key"
    )
    on_unknown: Literal["rerun", "lookup", "mark_unknown"] | None = Field(
        default=None,
        description="what resume does with a call that started but has no recorded result",
    )
    lookup: str | None = Field(
        default=None,
        pattern=CALLABLE,
        description="module:function(ctx) answering whether the call with ctx's key happened",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="capped by the agent's loop.step_timeout_s"
    )
    permissions: Permissions = Field(default_factory=Permissions)
    limits: Limits = Field(default_factory=Limits)
    quotas: Quotas = Field(default_factory=Quotas)
    approval: Approval = Field(default_factory=Approval)

    @model_validator(mode="after")
    def _kind_fields(self) -> ToolSpec:
        if self.kind == "python" and not self.callable:
            raise ValueError("kind 'python' needs `callable: module:function`")
        if self.kind != "python" and self.callable:
            raise ValueError(f"`callable` is for kind 'python', not {self.kind!r}")
        for kind, section in _KIND_SECTIONS.items():
            given = getattr(self, section) is not None
            if kind == self.kind and not given and kind not in ("code", "memory"):
                raise ValueError(f"kind {kind!r} needs a `{section}:` section")
            if kind != self.kind and given:
                raise ValueError(f"`{section}:` is for kind {kind!r}, not {self.kind!r}")
        if self.on_unknown == "lookup" and not self.lookup:
            raise ValueError("on_unknown 'lookup' needs `lookup: module:function`")
        return self

    def unknown_policy(self) -> Literal["rerun", "lookup", "mark_unknown"]:
        """The policy used for an interrupted call, with defaults applied."""
        if self.on_unknown is not None:
            return self.on_unknown
        # A child run, or a remembered fact, is found again by the call's key.
        if self.idempotent or self.kind in ("agent", "memory"):
            return "rerun"
        return "lookup" if self.lookup else "mark_unknown"
