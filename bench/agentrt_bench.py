"""agentrt under test: an embedded ``Runtime`` over its durable SQLite store."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from agentrt.engine.runtime import Runtime
from agentrt.spec import Resource, parse_resource
from bench.common import INSTRUCTIONS, MODEL_NAME

__all__ = ["AgentrtSystem", "resources"]

AGENT = "calc"


def resources(
    url: str, *, tool: str = "bench.common:add", idempotent: bool = True
) -> list[Resource]:
    """The Model (the test server over HTTP), the ``add`` Tool and the Agent."""
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": {"name": MODEL_NAME},
            "spec": {"provider": "openai", "base_url": url},
        },
        {
            "kind": "Tool",
            "metadata": {"name": "add"},
            "spec": {"kind": "python", "callable": tool, "idempotent": idempotent},
        },
        {
            "kind": "Agent",
            "metadata": {"name": AGENT},
            "spec": {
                "model": MODEL_NAME,
                "instructions": INSTRUCTIONS,
                "tools": ["add"],
                "loop": {"max_steps": 50},
            },
        },
    ]
    return [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in docs]


class AgentrtSystem:
    """``Runtime`` with its SQLite store at ``db_path``; :meth:`run` is ``rt.run``.

    Args:
        url: The model server's base URL.
        db_path: The store's database file.
        tool: ``module:function`` of the tool (a sync ``add`` by default).
        idempotent: Declare the tool idempotent (agentrt then need not commit its
            result before going on); ``False`` treats it as having external effects.
    """

    def __init__(
        self,
        url: str,
        db_path: Path,
        *,
        tool: str = "bench.common:add",
        idempotent: bool = True,
    ) -> None:
        self.db_path = db_path
        self._url = url
        self._tool = tool
        self._idempotent = idempotent
        self._rt: Runtime | None = None

    async def __aenter__(self) -> AgentrtSystem:
        rt = Runtime(str(self.db_path), resume_interrupted=False)
        await rt.start()
        try:
            await rt.apply(resources(self._url, tool=self._tool, idempotent=self._idempotent))
        except BaseException:
            await rt.close()
            raise
        self._rt = rt
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rt is not None:
            await self._rt.close()
            self._rt = None

    async def run(self, text: str) -> str:
        """Run one query to its final answer and return it."""
        assert self._rt is not None
        result = await self._rt.run(AGENT, text)
        if result.status != "succeeded":
            raise RuntimeError(
                f"agentrt run {result.run_id} ended {result.status}: {result.reason}"
            )
        return result.output or ""
