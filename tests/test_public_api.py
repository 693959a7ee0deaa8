"""The public API, pinned: a change here is a change users see, so it shows in review."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "agentrt": [
        "AgentrtError",
        "HookSet",
        "NondeterminismError",
        "RunError",
        "RunResult",
        "Runtime",
        "SpecError",
        "ToolContext",
        "ToolError",
        "ToolResult",
        "UsageError",
        "__version__",
    ],
    "agentrt.engine": [
        "EventObserver",
        "HOOK_PHASES",
        "HookPhase",
        "HookSet",
        "LiveWorker",
        "LogAwareObserver",
        "RunContext",
        "RunResult",
        "RunView",
        "Runtime",
        "Serving",
        "ServingState",
        "StepInfo",
        "live_workers",
        "read_run",
        "run_summary",
    ],
    "agentrt.spec": [
        "API_VERSION",
        "Agent",
        "AgentSpec",
        "AgentToolSpec",
        "Approval",
        "Budgets",
        "CodeToolSpec",
        "Hooks",
        "HttpToolSpec",
        "KINDS",
        "Limits",
        "Loaded",
        "LoopPolicy",
        "McpToolSpec",
        "Metadata",
        "Model",
        "ModelSpec",
        "Permissions",
        "Pricing",
        "Query",
        "QuerySpec",
        "Quotas",
        "Resource",
        "ResourceKey",
        "RetryPolicy",
        "ScriptedRule",
        "ScriptedStep",
        "ScriptedToolCall",
        "StopConditions",
        "Tool",
        "ToolSpec",
        "check_callables",
        "check_references",
        "iter_resource_files",
        "key_of",
        "load_paths",
        "load_text",
        "parse_resource",
    ],
    "agentrt.state": [
        "ACTIVE_STATUSES",
        "Event",
        "EventDraft",
        "GcResult",
        "MemoryHit",
        "MemoryRecord",
        "MemoryStore",
        "NewMemory",
        "NewRun",
        "Opening",
        "PostgresStore",
        "RUN_STATUSES",
        "ResourceRecord",
        "RunBlob",
        "RunRecord",
        "RunStatus",
        "RunUpdate",
        "SessionRecord",
        "SqliteStore",
        "Store",
        "TERMINAL_STATUSES",
        "Usage",
        "WAITING_STATUSES",
        "default_store_path",
        "open_store",
    ],
    "agentrt.models": [
        "Message",
        "ModelClient",
        "ModelRequest",
        "ModelResponse",
        "ModelTestServer",
        "OpenAIClient",
        "ScriptedClient",
        "ToolCall",
        "ToolDef",
        "create_client",
        "scripted_reply",
    ],
    "agentrt.tools": [
        "PythonTool",
        "StepKey",
        "TOOL_KINDS",
        "ToolContext",
        "ToolFactory",
        "ToolResult",
        "ToolSet",
        "Withholding",
        "build_toolset",
        "schema_from_signature",
    ],
    "agentrt.errors": [
        "AgentrtError",
        "BudgetExhausted",
        "CancelRequested",
        "ConflictError",
        "LeaseLost",
        "ModelError",
        "NondeterminismError",
        "NotFoundError",
        "OutputTruncated",
        "RunError",
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
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"


def test_public_callables_have_docstrings() -> None:
    for module in PUBLIC:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) and getattr(obj, "__module__", "").startswith("agentrt"):
                assert obj.__doc__, f"{module}.{name} has no docstring"
