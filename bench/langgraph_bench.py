"""LangGraph under test: a ``StateGraph`` compiled with its SQLite checkpointer.

A model node (same aiohttp POST as the bare loop), a tool node and a
conditional edge between them. By default the state is a list of
OpenAI-shaped message dicts with ``operator.add`` as its reducer: no LangChain
message classes, so this is LangGraph's graph and checkpointer cost and
nothing more. With ``langchain_messages=True`` the state is the idiomatic
``add_messages`` list of LangChain messages, converted to OpenAI dicts for each
request. Only importable with the ``bench-langgraph`` extra installed.
"""

from __future__ import annotations

import contextlib
import operator
import secrets
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, TypedDict

import aiohttp
import orjson
from langchain_core.messages import convert_to_openai_messages
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from bench.common import INSTRUCTIONS, MODEL_NAME, TOOL_DEFS, add

__all__ = ["LangGraphSystem"]

_TOOLS = {"add": add}
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class _State(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


class _LangChainState(TypedDict):
    messages: Annotated[list[Any], add_messages]


def _route(state: _State) -> str:
    return "tools" if state["messages"][-1].get("tool_calls") else END


def _route_langchain(state: _LangChainState) -> str:
    return "tools" if state["messages"][-1].tool_calls else END


class LangGraphSystem:
    """A LangGraph agent checkpointed by ``AsyncSqliteSaver`` into ``db_path``.

    Args:
        url: The model server's base URL.
        db_path: The checkpointer's database file.
        synchronous: A ``PRAGMA synchronous`` value to set on the checkpointer's
            connection; ``None`` keeps LangGraph's default (SQLite's ``FULL``).
        durability: LangGraph's ``durability`` for each invocation; ``None``
            keeps its default (``async``).
        langchain_messages: Keep LangChain message objects (``add_messages``)
            in the state instead of plain dicts.
    """

    def __init__(
        self,
        url: str,
        db_path: Path,
        *,
        synchronous: str | None = None,
        durability: str | None = None,
        langchain_messages: bool = False,
    ) -> None:
        self.db_path = db_path
        self._url = f"{url}/chat/completions"
        self._synchronous = synchronous
        self._durability = durability
        self._langchain = langchain_messages
        self._stack = contextlib.AsyncExitStack()
        self._http: aiohttp.ClientSession | None = None
        self._graph: Any = None

    async def __aenter__(self) -> LangGraphSystem:
        async with contextlib.AsyncExitStack() as stack:
            saver = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(str(self.db_path))
            )
            await saver.setup()
            if self._synchronous is not None:
                await saver.conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            )
            stack.push_async_callback(http.close)
            self._http = http
            builder: StateGraph[Any] = StateGraph(_LangChainState if self._langchain else _State)
            builder.add_node("model", self._model)
            builder.add_node("tools", self._lc_tools if self._langchain else self._tools)
            builder.add_edge(START, "model")
            route = _route_langchain if self._langchain else _route
            builder.add_conditional_edges("model", route, ["tools", END])
            builder.add_edge("tools", "model")
            self._graph = builder.compile(checkpointer=saver)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _model(self, state: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        messages = state["messages"]
        if self._langchain:
            messages = convert_to_openai_messages(messages)
        body = orjson.dumps({"model": MODEL_NAME, "messages": messages, "tools": TOOL_DEFS})
        async with self._http.post(self._url, data=body, headers=_HEADERS) as resp:
            resp.raise_for_status()
            reply = orjson.loads(await resp.read())
        return {"messages": [reply["choices"][0]["message"]]}

    async def _tools(self, state: _State) -> dict[str, Any]:
        results = []
        for call in state["messages"][-1]["tool_calls"]:
            function = call["function"]
            output = _TOOLS[function["name"]](**orjson.loads(function["arguments"]))
            results.append({"role": "tool", "tool_call_id": call["id"], "content": str(output)})
        return {"messages": results}

    async def _lc_tools(self, state: _LangChainState) -> dict[str, Any]:
        results = []
        for call in state["messages"][-1].tool_calls:
            output = _TOOLS[call["name"]](**call["args"])
            results.append({"role": "tool", "tool_call_id": call["id"], "content": str(output)})
        return {"messages": results}

    async def run(self, text: str) -> str:
        """Run one query (a new thread) to its final answer and return it."""
        config: dict[str, Any] = {
            "configurable": {"thread_id": secrets.token_hex(8)},
            "recursion_limit": 200,
        }
        kwargs: dict[str, Any] = {}
        if self._durability is not None:
            kwargs["durability"] = self._durability
        start = {
            "messages": [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": text},
            ]
        }
        out = await self._graph.ainvoke(start, config, **kwargs)
        last = out["messages"][-1]
        content = last.content if self._langchain else last.get("content")
        return str(content or "")
