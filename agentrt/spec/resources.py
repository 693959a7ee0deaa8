"""Resource types: the Kubernetes-style envelope and the spec of each kind.

Every model forbids unknown fields so that a typo is an error that names the
field, not a setting that is silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agentrt.spec._checks import tool_input_schema, unique_names
from agentrt.spec.network import parse_rule
from agentrt.spec.patterns import Regex

API_VERSION = "agentrt.dev/v1"
_NAME = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
_CALLABLE = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


Names = Annotated[list[str], AfterValidator(unique_names)]
"""A list of names in which each may appear once (a repeat is a mistake, never a meaning)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    """Identity of a resource. ``namespace`` is the tenant."""

    name: str = Field(pattern=_NAME, description="lower-case letters, digits, '.', '_', '-'")
    namespace: str = Field(default="default", pattern=_NAME)
    labels: dict[str, str] = Field(default_factory=dict)


# --- Model ---------------------------------------------------------------------


class Pricing(_Strict):
    """Price in US dollars per million tokens."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Cost in dollars of a call with the given token counts."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class ScriptedToolCall(_Strict):
    """A tool call the scripted model makes."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedStep(_Strict):
    """One scripted model reply: text, tool calls, or both.

    ``content`` may use ``{input}`` (the user message) and ``{last_tool_result}``
    (the most recent tool output) as placeholders; tool-call string arguments may too.
    """

    content: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> ScriptedStep:
        if self.content is None and not self.tool_calls:
            raise ValueError("a scripted step needs `content` or `tool_calls`")
        return self


class ScriptedRule(_Strict):
    """Replies used when the latest user message matches ``match`` (a regex)."""

    match: Regex = Field(default=".*", description="regex searched in the latest user message")
    steps: list[ScriptedStep] = Field(
        min_length=1, description="reply i answers the i-th model call after that message"
    )


class ModelSpec(_Strict):
    """A language model endpoint and what it costs.

    Requests go through the proxy that ``HTTP_PROXY``/``HTTPS_PROXY`` name,
    unless ``NO_PROXY`` lists the endpoint's host.
    """

    provider: Literal["openai", "scripted"]
    model: str | None = Field(
        default=None,
        description="provider's model id (api azure: the deployment); default: the name",
    )
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint, e.g. .../v1 "
        "(api azure: the resource, https://NAME.openai.azure.com)",
    )
    api: Literal["openai", "azure"] = Field(
        default="openai",
        description="openai: POST {base_url}/chat/completions, key as a Bearer token; azure: "
        "POST {base_url}/openai/deployments/{model}/chat/completions?api-version=..., "
        "key in an `api-key` header",
    )
    api_version: str | None = Field(
        default=None, min_length=1, description="api azure: the api-version, e.g. 2024-10-21"
    )
    api_key_env: str | None = Field(default=None, description="environment variable with the key")
    pricing: Pricing = Field(default_factory=Pricing, description="for cost accounting")
    timeout_s: float = Field(default=60.0, gt=0, description="per HTTP request")
    max_retries: int = Field(
        default=3, ge=0, le=20, description="client retries on 429/5xx, honouring Retry-After"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, gt=0)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="request field for max_output_tokens; OpenAI's reasoning models "
        "(o1, o3, gpt-5) take only max_completion_tokens",
    )
    context_window: int | None = Field(
        default=None, gt=0, description="tokens the model accepts per request (prompt + output)"
    )
    fallbacks: Names = Field(
        default_factory=list, description="Models tried in order when this one keeps failing"
    )
    script: list[ScriptedRule] = Field(
        default_factory=list, description="replies of the `scripted` provider"
    )

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelSpec:
        if self.provider == "openai" and not self.base_url:
            raise ValueError(
                "provider 'openai' needs `base_url` (e.g. https://api.openai.com/v1 "
                "or http://127.0.0.1:8000/v1 for vLLM/Ollama)"
            )
        if self.provider != "scripted" and self.script:
            raise ValueError("`script` is only for provider 'scripted'")
        if self.api == "azure" and self.provider != "openai":
            raise ValueError("api 'azure' is for provider 'openai'")
        if self.api == "azure" and not self.api_version:
            raise ValueError(
                "api 'azure' needs `api_version` (e.g. 2024-10-21); for Azure's v1 API "
                "(base_url https://NAME.openai.azure.com/openai/v1) use api 'openai'"
            )
        if self.api != "azure" and self.api_version:
            raise ValueError("`api_version` is for api 'azure'; remove it or set `api: azure`")
        return self


# --- Tool ----------------------------------------------------------------------


class HttpToolSpec(_Strict):
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


class McpToolSpec(_Strict):
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


class CodeToolSpec(_Strict):
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


class AgentToolSpec(_Strict):
    """Another Agent used as a tool: each call is a child run."""

    agent: str = Field(description="name of the Agent (same namespace)")
    budget_share: float = Field(
        default=0.5, gt=0, le=1, description="share of the parent's remaining budgets it may use"
    )


class MemoryToolSpec(_Strict):
    """The tenant's long-term memory as tools: ``remember`` a fact, ``recall`` by search."""

    write: bool = Field(default=True, description="offer `remember` (false: search only)")
    max_results: int = Field(default=5, ge=1, le=50, description="facts `recall` returns at most")
    tags: Names = Field(
        default_factory=list,
        description="search only facts with all these tags, and add them to what is remembered",
    )


class Permissions(_Strict):
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


class Limits(_Strict):
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


class Quotas(_Strict):
    """How often a tool may be called. ``None`` means unlimited."""

    per_run: int | None = Field(default=None, ge=0)
    per_session: int | None = Field(default=None, ge=0)
    per_tenant_per_day: int | None = Field(default=None, ge=0)


class Approval(_Strict):
    """When a person must approve a call before it runs."""

    required: bool = False
    when: dict[str, Regex] = Field(
        default_factory=dict,
        description="only when these arguments match these regexes (all must match)",
    )


_KIND_SECTIONS = {
    "http": "http",
    "mcp": "mcp",
    "code": "code",
    "agent": "agent",
    "memory": "memory",
}


class ToolSpec(_Strict):
    """A tool the model may call."""

    kind: Literal["python", "http", "mcp", "code", "agent", "memory"] = Field(
        description="how the tool runs"
    )
    callable: str | None = Field(
        default=None, pattern=_CALLABLE, description="kind python: module:function"
    )
    http: HttpToolSpec | None = None
    mcp: McpToolSpec | None = None
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
        pattern=_CALLABLE,
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


# --- Agent ---------------------------------------------------------------------


class RetryPolicy(_Strict):
    """Retries of a failed step with exponential backoff."""

    max_attempts: int = Field(default=3, ge=1, le=50)
    initial_backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=10.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        delay = self.initial_backoff_s * self.multiplier ** (attempt - 1)
        return float(min(delay, self.max_backoff_s))


class StopConditions(_Strict):
    """Extra reasons to end the loop besides a reply without tool calls."""

    on_tools: Names = Field(
        default_factory=list,
        description="stop after one of these tools (by its own name or the model's); "
        "its output is the answer",
    )
    output_matches: Regex | None = Field(
        default=None, description="stop when an assistant reply matches this regex"
    )


class LoopPolicy(_Strict):
    """How the reasoning loop runs."""

    max_steps: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="model calls per run (a session summary is one of them)",
    )
    step_timeout_s: float = Field(default=120.0, gt=0, description="per model or tool step")
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="failed model steps; tool steps only when the tool is idempotent",
    )
    stop: StopConditions = Field(default_factory=StopConditions)
    parallel_tool_calls: bool = Field(
        default=True, description="run the tool calls of one model reply concurrently"
    )
    on_truncated: Literal["fail", "continue", "accept"] = Field(
        default="fail",
        description="a reply cut off by the output limit (finish_reason length): fail the run, "
        "ask the model to continue (the parts form one answer), or accept it as it is",
    )


class Budgets(_Strict):
    """Limits on what one run may consume. ``None`` means unlimited."""

    max_tokens: int | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    deadline_s: float | None = Field(default=None, gt=0, description="wall time from start")
    max_child_runs: int | None = Field(
        default=100,
        ge=0,
        description="child runs its agent tools may start, their own children included "
        "(each child gets a share of what is left); null: unlimited",
    )
    max_depth: int | None = Field(
        default=5,
        ge=0,
        description="levels of child runs that agent tools may nest below it; null: unlimited",
    )

    def merged(self, override: Budgets | None) -> Budgets:
        """These budgets with every field given (not null) in ``override`` replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True, exclude_unset=True))


class Hooks(_Strict):
    """User hooks, each a ``module:function``, called at one phase of the loop."""

    before_model: str | None = Field(default=None, pattern=_CALLABLE)
    after_model: str | None = Field(default=None, pattern=_CALLABLE)
    before_tool: str | None = Field(default=None, pattern=_CALLABLE)
    after_tool: str | None = Field(default=None, pattern=_CALLABLE)
    on_step: str | None = Field(default=None, pattern=_CALLABLE)
    on_finish: str | None = Field(default=None, pattern=_CALLABLE)


class SessionMemory(_Strict):
    """How a session's earlier turns are given to the model when they outgrow a budget."""

    policy: Literal["full", "window", "summary"] = Field(
        default="full",
        description="full: every earlier turn; window: the latest turns that fit `max_tokens`; "
        "summary: older turns folded into a summary made by a model, the latest kept verbatim",
    )
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="budget for the earlier turns (estimated at 4 characters a token); "
        "default: half the model's `context_window`",
    )
    keep_turns: int = Field(
        default=2, ge=0, description="summary: the latest turns always kept word for word"
    )
    summary_model: str | None = Field(
        default=None, description="summary: the Model that writes summaries; default: the agent's"
    )
    summary_words: int = Field(default=150, gt=0, description="summary: length asked for")


class Memory(_Strict):
    """What an agent remembers beyond one run."""

    session: SessionMemory = Field(default_factory=SessionMemory)


class AgentSpec(_Strict):
    """An agent as a workload: model, instructions, tools, loop policy and budgets."""

    model: str = Field(description="name of a Model resource")
    instructions: str = Field(default="", description="the system prompt")
    tools: Names = Field(default_factory=list, description="names of Tool resources")
    loop: LoopPolicy = Field(default_factory=LoopPolicy)
    budgets: Budgets = Field(default_factory=Budgets)
    hooks: Hooks = Field(default_factory=Hooks, description="module:function per loop phase")
    memory: Memory = Field(default_factory=Memory)


# --- Team ----------------------------------------------------------------------

Scalar = str | int | float | bool


class StateKey(_Strict):
    """One key of a team's shared state, and how concurrent writes to it merge."""

    reducer: Literal["last", "append", "merge"] = Field(
        default="last",
        description="last: the write of the latest node in graph order wins; append: a list "
        "of every write, in node (and map item) order; merge: mappings merged in that order",
    )
    rounds: Literal["all", "latest"] = Field(
        default="all",
        description="all: writes of every loop round are reduced; latest: a node run again by "
        "a loop replaces its writes of earlier rounds (the redo supersedes the rejected work)",
    )
    type: Literal["any", "string", "number", "boolean", "list", "object"] = "any"


class Condition(_Strict):
    """A test on one key of the shared state (exactly one of the tests)."""

    key: str = Field(description="a state key")
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    matches: Regex | None = Field(default=None, description="a regex searched in the value")
    not_matches: Regex | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [
            t
            for t in ("equals", "not_equals", "matches", "not_matches")
            if t in self.model_fields_set
        ]
        if len(tests) != 1:
            raise ValueError("give exactly one of `equals`, `not_equals`, `matches`, `not_matches`")
        return self


class FanOut(_Strict):
    """A ``map`` node: one instance of the member per item of a list, joined in item order."""

    over: str = Field(
        description='a state key holding a list, or "input" (the query input: a JSON list, '
        "else one item per non-empty line)"
    )
    max_items: int = Field(default=100, ge=1, le=10_000)


class RouteRule(_Strict):
    """Pick ``member`` when ``match`` (a regex) is found in the routed text."""

    match: Regex
    member: str


class RouteSpec(_Strict):
    """A node that chooses one member, by rules or by asking a model; writes its name."""

    members: Names = Field(min_length=1, description="names of nodes it may choose")
    rules: list[RouteRule] = Field(default_factory=list, description="tried in order")
    model: str | None = Field(default=None, description="a Model that names the member")
    default: str | None = Field(default=None, description="when no rule matches")

    @model_validator(mode="after")
    def _how(self) -> RouteSpec:
        if not self.rules and self.model is None:
            raise ValueError("a route needs `rules` or a `model` to choose with")
        return self


class TeamNode(_Strict):
    """One node of a team's graph: an agent, a tool, another team, or a route."""

    name: str = Field(pattern=_NAME)
    agent: str | None = Field(default=None, description="an Agent (same namespace)")
    tool: str | None = Field(default=None, description="a Tool, called with {input: ...}")
    team: str | None = Field(default=None, description="another Team")
    route: RouteSpec | None = Field(default=None, description="choose one of several nodes")
    input: str = Field(
        default="{input}",
        description="template: {input} (the query), {state.KEY}, {item} (in a map)",
    )
    output: str | None = Field(
        default=None, description="state key the result is written to (default: the node's name)"
    )
    after: Names = Field(default_factory=list, description="nodes that must finish first")
    when: Condition | None = Field(default=None, description="else the node is skipped")
    map: FanOut | None = None
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=1),
        description="of a failed node (each attempt sends the same idempotency key); "
        "a route's model call is retried under it too",
    )

    @model_validator(mode="after")
    def _one_member(self) -> TeamNode:
        given = [k for k in ("agent", "tool", "team", "route") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a node needs exactly one of `agent`, `tool`, `team`, `route`")
        if self.route is not None and self.map is not None:
            raise ValueError("a route node cannot be a `map`")
        return self

    @property
    def member(self) -> tuple[str, str]:
        """(kind, name) of what the node runs; ("Route", "") for a route."""
        if self.agent is not None:
            return "Agent", self.agent
        if self.tool is not None:
            return "Tool", self.tool
        if self.team is not None:
            return "Team", self.team
        return "Route", ""

    @property
    def writes(self) -> str:
        """The state key the node's result goes to."""
        return self.output or self.name


class TeamLoop(_Strict):
    """A bounded edge back: after node ``after``, while ``when`` holds, run again from ``to``."""

    after: str = Field(description="the node whose end is checked")
    to: str = Field(description="an earlier node; it and what follows it up to `after` rerun")
    when: Condition
    max_rounds: int = Field(ge=2, le=1000, description="rounds in all, the first included")


class Strategy(_Strict):
    """A named team shape, built into a graph (see docs/teams.md)."""

    kind: Literal[
        "sequential", "round-robin", "selector", "planner-workers-evaluator", "router", "map"
    ]
    members: list[str] = Field(default_factory=list, description="Agents, in order")
    planner: str | None = Field(default=None, description="planner-workers-evaluator: an Agent")
    workers: list[str] = Field(default_factory=list, description="planner-workers-evaluator")
    evaluator: str | None = Field(default=None, description="planner-workers-evaluator")
    accept: Regex = Field(
        default=r"^\s*ACCEPT", description="regex: the evaluator's reply accepts the work"
    )
    max_rounds: int = Field(default=3, ge=1, le=1000, description="rounds or turns in all")
    rules: list[RouteRule] = Field(default_factory=list, description="router/selector rules")
    model: str | None = Field(default=None, description="router/selector: a Model that chooses")
    over: str = Field(default="input", description='map: a state key or "input"')
    reduce: str | None = Field(default=None, description="map: an Agent joining the results")

    @model_validator(mode="after")
    def _shape(self) -> Strategy:
        k = self.kind
        if k == "planner-workers-evaluator":
            if not (self.planner and self.workers and self.evaluator):
                raise ValueError(
                    "planner-workers-evaluator needs `planner`, `workers` and `evaluator`"
                )
        elif k == "map":
            if len(self.members) != 1:
                raise ValueError("map needs exactly one member (the Agent run per item)")
        elif not self.members:
            raise ValueError(f"{k} needs `members`")
        if k in ("router", "selector") and not self.rules and self.model is None:
            raise ValueError(f"{k} needs `rules` or a `model` to choose with")
        return self


class TeamSpec(_Strict):
    """Agents, tools and teams run as one graph, explicit or from a strategy."""

    description: str = ""
    nodes: list[TeamNode] = Field(default_factory=list, description="an explicit graph")
    entry: Names = Field(
        default_factory=list, description="nodes that start the graph (default: the first node)"
    )
    loops: list[TeamLoop] = Field(default_factory=list, description="bounded edges back")
    strategy: Strategy | None = Field(default=None, description="instead of `nodes`")
    state: dict[str, StateKey] = Field(
        default_factory=dict, description="shared state keys (undeclared outputs: reducer last)"
    )
    output: str | None = Field(
        default=None, description="the state key that is the team's answer (default: last node's)"
    )
    concurrency: int = Field(default=4, ge=1, le=1024, description="nodes running at once")
    budgets: Budgets = Field(default_factory=Budgets)

    @model_validator(mode="after")
    def _graph_or_strategy(self) -> TeamSpec:
        if bool(self.nodes) == (self.strategy is not None):
            raise ValueError("give either `nodes` (an explicit graph) or a `strategy`")
        if self.strategy is not None and (self.entry or self.loops):
            raise ValueError("`entry` and `loops` are for an explicit graph (`nodes`)")
        return self


# --- Query ---------------------------------------------------------------------


class QuerySpec(_Strict):
    """A request to run an agent; it becomes a run."""

    target: str = Field(description="name of the Agent (or Team)")
    input: str = Field(description="the user's message")
    session: str | None = Field(default=None, description="continue this conversation")
    idempotency_key: str | None = Field(
        default=None, description="a second Query with the same key returns the first run"
    )
    budgets: Budgets | None = Field(default=None, description="override the Agent's budgets")
    concurrency: int | None = Field(
        default=None, ge=1, description="a Team's run: at most this many nodes at once"
    )


# --- envelopes -----------------------------------------------------------------


class _Envelope(_Strict):
    apiVersion: Literal["agentrt.dev/v1"]
    metadata: Metadata

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace``, the tenant."""
        return self.metadata.namespace


class Model(_Envelope):
    """A ``Model`` resource."""

    kind: Literal["Model"]
    spec: ModelSpec


class Tool(_Envelope):
    """A ``Tool`` resource."""

    kind: Literal["Tool"]
    spec: ToolSpec


class Agent(_Envelope):
    """An ``Agent`` resource."""

    kind: Literal["Agent"]
    spec: AgentSpec


class Team(_Envelope):
    """A ``Team`` resource."""

    kind: Literal["Team"]
    spec: TeamSpec


class Query(_Envelope):
    """A ``Query`` resource."""

    kind: Literal["Query"]
    spec: QuerySpec


Resource = Model | Tool | Agent | Team | Query
KINDS: dict[str, type[Model] | type[Tool] | type[Agent] | type[Team] | type[Query]] = {
    "Model": Model,
    "Tool": Tool,
    "Agent": Agent,
    "Team": Team,
    "Query": Query,
}
