"""One client per replica endpoint of a Model that serves from several.

The engine picks the replica of each call (:mod:`agentrt.engine.replicas`) and asks
:meth:`ReplicaClients.at` for its client; a plain :meth:`~ReplicaClients.complete`
goes to the first endpoint, the Model's ``base_url``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agentrt.models.base import ModelDelta, ModelRequest, ModelResponse
from agentrt.models.openai import OpenAIClient

__all__ = ["ReplicaClients"]


class ReplicaClients:
    """The clients of a Model's replica endpoints, by base URL (the first: the default)."""

    def __init__(self, clients: Mapping[str, OpenAIClient]) -> None:
        """``clients`` by endpoint, in the Model's order; at least one."""
        if not clients:
            raise ValueError("a replicated Model needs at least one endpoint")
        self._clients = dict(clients)
        self._first = next(iter(self._clients.values()))

    @property
    def endpoints(self) -> list[str]:
        """The endpoints, in the Model's order."""
        return list(self._clients)

    def at(self, endpoint: str) -> OpenAIClient:
        """The client of ``endpoint`` (the first endpoint's for one not known)."""
        return self._clients.get(endpoint.rstrip("/"), self._first)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """A completion from the first endpoint."""
        return await self._first.complete(request)

    async def stream(
        self, request: ModelRequest, on_delta: Callable[[ModelDelta], None]
    ) -> ModelResponse:
        """A streamed completion from the first endpoint."""
        return await self._first.stream(request, on_delta)

    async def close(self) -> None:
        """Close every endpoint's client. Idempotent."""
        for client in self._clients.values():
            await client.close()
