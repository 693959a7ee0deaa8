"""Model clients: provider-neutral types, an OpenAI-compatible client, the
offline scripted provider, and a local OpenAI-compatible test server.

``ModelTestServer`` is imported on first use, so that importing this package
does not load the aiohttp server and ``python -m agentrt.models.testserver``
runs without importing its module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentrt.models.base import (
    Message,
    ModelClient,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    StreamingModelClient,
    ToolCall,
    ToolDef,
)
from agentrt.models.factory import create_client
from agentrt.models.openai import OpenAIClient
from agentrt.models.scripted import ScriptedClient, scripted_reply

if TYPE_CHECKING:
    from agentrt.models.testserver import ModelTestServer

__all__ = [
    # types and protocol
    "Message",
    "ModelClient",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
    "StreamingModelClient",
    "ToolCall",
    "ToolDef",
    # clients
    "OpenAIClient",
    "ScriptedClient",
    "create_client",
    "scripted_reply",
    # testing
    "ModelTestServer",
]


def __getattr__(name: str) -> Any:
    if name == "ModelTestServer":
        from agentrt.models.testserver import ModelTestServer

        return ModelTestServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
