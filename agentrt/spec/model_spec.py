"""The spec of a ``Model`` resource: provider, endpoint, pricing, rate limits, circuit
breaker, the scripted provider's rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from agentrt.spec._base import Names, Strict
from agentrt.spec.patterns import Regex

__all__ = [
    "CircuitPolicy",
    "ModelSpec",
    "Pricing",
    "RateLimits",
    "ReplicaAffinity",
    "ScriptedRule",
    "ScriptedStep",
    "ScriptedToolCall",
]


class Pricing(Strict):
    """Price in US dollars per million tokens."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="input tokens the provider's prefix cache served; default: input_per_mtok",
    )

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Cost in dollars of a call with the given token counts: ``cached_tokens`` of the
        input at the cached price, the rest of it at the input price."""
        cached = min(max(cached_tokens, 0), input_tokens)
        cached_price = self.cached_input_per_mtok
        if cached_price is None:
            cached_price = self.input_per_mtok
        uncached = (input_tokens - cached) * self.input_per_mtok
        return (uncached + cached * cached_price + output_tokens * self.output_per_mtok) / 1e6


class RateLimits(Strict):
    """What one Model's calls may use per minute, together on every worker of the store.

    Each call waits its turn in the Model's bucket in the store; none fails for it.
    """

    requests_per_minute: int | None = Field(
        default=None, gt=0, description="calls (each attempt) begun in any 60 s"
    )
    tokens_per_minute: int | None = Field(
        default=None,
        gt=0,
        description="tokens in any 60 s, each call counted at its worst case: its request's "
        "bytes and its max_output_tokens",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimits:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError(
                "`rate_limits` needs `requests_per_minute` or `tokens_per_minute` (or both); "
                "remove it for no limit"
            )
        return self


class CircuitPolicy(Strict):
    """When a Model's endpoint is taken out of the way of its steps, and for how long.

    The breaker of an endpoint (the Model and its ``base_url``) is kept in the store,
    so every worker of the fleet sees it: after ``failures`` failed calls in a row
    (an error, a 429, a 5xx, a timeout) it opens, and the steps that would call the
    endpoint go straight to the next Model of their fallbacks; after ``open_s`` one
    call (across the fleet) is let through as a probe: its success closes the
    circuit, its failure opens it again.
    """

    enabled: bool = Field(default=True, description="false: always call the endpoint")
    failures: int = Field(
        default=5, ge=1, le=1000, description="failed calls in a row that open the circuit"
    )
    open_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="seconds it stays open before one probe call is let through",
    )


class ReplicaAffinity(Strict):
    """How a Model's sessions are spread over its replica endpoints.

    A session (a run without one: the run) is placed by consistent hashing with
    bounded load: on the first replica of its hash ring that holds fewer than
    ``load_factor`` times the mean of the sessions placed, and then sticks to it,
    so the provider's prefix cache of that replica serves its growing prompt. It
    moves only when its replica is down (a connection error, an open circuit) or
    holds more than the bound, and then stays on the replica it moved to.
    """

    sticky: bool = Field(
        default=True,
        description="false: each call goes to the next replica in turn, as a plain load "
        "balancer spreads them (no prefix stays on one replica)",
    )
    load_factor: float = Field(
        default=1.25,
        ge=1.0,
        le=10.0,
        description="a replica takes at most this times the mean of the sessions placed",
    )
    down_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="seconds a replica that refused a connection is passed over",
    )


class ScriptedToolCall(Strict):
    """A tool call the scripted model makes."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedStep(Strict):
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


class ScriptedRule(Strict):
    """Replies used when the latest user message matches ``match`` (a regex)."""

    match: Regex = Field(default=".*", description="regex searched in the latest user message")
    steps: list[ScriptedStep] = Field(
        min_length=1, description="reply i answers the i-th model call after that message"
    )


class ModelSpec(Strict):
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
    replicas: list[str] = Field(
        default_factory=list,
        description="more endpoints serving the same model as `base_url` (the first "
        "replica); a session sticks to one of them (see `affinity`)",
    )
    affinity: ReplicaAffinity = Field(
        default_factory=lambda: ReplicaAffinity(),
        description="how sessions are spread over `base_url` and `replicas`",
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
        default=3,
        ge=0,
        le=20,
        description="client retries on 429/5xx, honouring Retry-After (none with rate_limits: "
        "the step's loop.retry retries, each attempt taking its turn)",
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
    max_running: int | None = Field(
        default=None, ge=1, description="runs of agents on it running at once, fleet-wide"
    )
    rate_limits: RateLimits | None = Field(
        default=None,
        description="per minute, held across every worker of the store; a fallback has its own",
    )
    fallbacks: Names = Field(
        default_factory=list, description="Models tried in order when this one keeps failing"
    )
    circuit: CircuitPolicy = Field(
        default_factory=CircuitPolicy,
        description="the endpoint's circuit breaker, shared by every worker (provider openai)",
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
        if self.replicas and self.provider != "openai":
            raise ValueError("`replicas` is for provider 'openai'")
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
