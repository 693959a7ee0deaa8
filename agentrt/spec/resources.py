"""Resource types: the Kubernetes-style envelope of each kind, and (from their modules) its spec.

``Model``, ``Tool``, ``Agent``, ``Team``, ``Query``, ``Budget`` and ``Policy``
are the resources; each one's ``spec`` type lives in a module of its own
(:mod:`.model_spec`, :mod:`.tool_spec`, :mod:`.agent_spec`, :mod:`.team_spec`,
:mod:`.budget_spec`, :mod:`.policy_spec`) and is listed here
too, so that this module names every type a resource file can hold. Every
model forbids unknown fields so that a typo is an error that names the field,
not a setting that is silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentrt.spec._base import NAME, Names, Strict
from agentrt.spec.agent_spec import (
    DOUBLE_TEXTING,
    AgentSpec,
    Budgets,
    Degrade,
    DoubleTexting,
    Hooks,
    LoopPolicy,
    Memory,
    PriorityClass,
    RetryPolicy,
    SessionMemory,
    SessionPolicy,
    StopConditions,
)
from agentrt.spec.budget_spec import BudgetPeriod, BudgetSpec
from agentrt.spec.model_spec import (
    CircuitPolicy,
    ModelSpec,
    Pricing,
    RateLimits,
    ReplicaAffinity,
    ScriptedRule,
    ScriptedStep,
    ScriptedToolCall,
)
from agentrt.spec.policy_spec import (
    PolicyCondition,
    PolicyEffect,
    PolicyOperator,
    PolicyRule,
    PolicySpec,
)
from agentrt.spec.routing_spec import AnswerCheck, RouteWhen, Routing, RoutingRule
from agentrt.spec.team_spec import (
    Condition,
    FanOut,
    RouteRule,
    RouteSpec,
    StateKey,
    Strategy,
    TeamLoop,
    TeamNode,
    TeamSpec,
)
from agentrt.spec.tenant_spec import TENANTS_NAMESPACE, TenantSpec
from agentrt.spec.tool_spec import (
    A2aToolSpec,
    AgentToolSpec,
    Approval,
    CodeToolSpec,
    HttpToolSpec,
    Limits,
    McpToolSpec,
    MemoryToolSpec,
    Permissions,
    Quotas,
    ToolSpec,
)

__all__ = [
    "API_VERSION",
    "DOUBLE_TEXTING",
    "Agent",
    "AgentSpec",
    "A2aToolSpec",
    "AgentToolSpec",
    "AnswerCheck",
    "Approval",
    "Budget",
    "BudgetPeriod",
    "BudgetSpec",
    "Budgets",
    "CircuitPolicy",
    "CodeToolSpec",
    "Condition",
    "Degrade",
    "DoubleTexting",
    "FanOut",
    "Hooks",
    "HttpToolSpec",
    "KINDS",
    "Limits",
    "LoopPolicy",
    "McpToolSpec",
    "Memory",
    "MemoryToolSpec",
    "Metadata",
    "Model",
    "ModelSpec",
    "Permissions",
    "Policy",
    "PolicyCondition",
    "PolicyEffect",
    "PolicyOperator",
    "PolicyRule",
    "PolicySpec",
    "Pricing",
    "RateLimits",
    "ReplicaAffinity",
    "Query",
    "QuerySpec",
    "Quotas",
    "Resource",
    "RetryPolicy",
    "RouteRule",
    "RouteSpec",
    "RouteWhen",
    "Routing",
    "RoutingRule",
    "ScriptedRule",
    "ScriptedStep",
    "ScriptedToolCall",
    "SessionMemory",
    "SessionPolicy",
    "StateKey",
    "StopConditions",
    "Strategy",
    "Team",
    "TeamLoop",
    "TeamNode",
    "TeamSpec",
    "TENANTS_NAMESPACE",
    "Tenant",
    "TenantSpec",
    "Tool",
    "ToolSpec",
]

API_VERSION = "agentrt.dev/v1"


class Metadata(Strict):
    """Identity of a resource. ``namespace`` is the tenant."""

    name: str = Field(pattern=NAME, description="lower-case letters, digits, '.', '_', '-'")
    namespace: str = Field(default="default", pattern=NAME)
    labels: dict[str, str] = Field(default_factory=dict)


class QuerySpec(Strict):
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
    double_texting: DoubleTexting | None = Field(
        default=None,
        description="when the session has an unfinished turn: reject, enqueue, interrupt or "
        "rollback (see the Agent's `session.double_texting`, which it overrides)",
    )
    tags: Names = Field(
        default_factory=list, description="words the Agent's `routing.rules` may route by"
    )
    priority: PriorityClass | None = Field(
        default=None, description="low, normal or high (default: the Agent's `priority`)"
    )


class _Envelope(Strict):
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


class Budget(_Envelope):
    """A ``Budget`` resource: what its tenant's runs may use together in a period."""

    kind: Literal["Budget"]
    spec: BudgetSpec


class Tenant(_Envelope):
    """A ``Tenant`` resource (in namespace ``agentrt-system``): a tenant's weight in the
    fair share of the fleet and its limit of runs at once."""

    kind: Literal["Tenant"]
    spec: TenantSpec


class Policy(_Envelope):
    """A ``Policy`` resource: which tool calls of its tenant's runs are allowed, refused
    or wait for approval."""

    kind: Literal["Policy"]
    spec: PolicySpec


Resource = Model | Tool | Agent | Team | Query | Budget | Policy | Tenant
KINDS: dict[
    str,
    type[Model]
    | type[Tool]
    | type[Agent]
    | type[Team]
    | type[Query]
    | type[Budget]
    | type[Policy]
    | type[Tenant],
] = {
    "Model": Model,
    "Tool": Tool,
    "Agent": Agent,
    "Team": Team,
    "Query": Query,
    "Budget": Budget,
    "Policy": Policy,
    "Tenant": Tenant,
}
