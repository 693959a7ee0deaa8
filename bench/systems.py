"""The systems under test, by name, and how to build each one."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

__all__ = ["LANGGRAPH_MISSING", "SYSTEMS", "System", "SystemDef", "langgraph_available"]

LANGGRAPH_MISSING = "langgraph not installed: pip install -e '.[bench-langgraph]'"


class System(Protocol):
    """An agent implementation: an async context manager that runs queries."""

    async def __aenter__(self) -> System: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def run(self, text: str) -> str:
        """Run one query to its final answer and return it."""
        ...


@dataclass(frozen=True)
class SystemDef:
    """A system under test.

    Attributes:
        name: Short name used by ``--only``.
        label: Row label in the tables.
        make: Builds the system from the server URL and a database path.
        durable: Whether it persists anything (the storage workload skips it if not).
        payload_sql: One SQL query giving the total bytes of stored payloads.
        langgraph: Needs the ``bench-langgraph`` extra.
        extra: A variant run only when named with ``--only`` or with ``--all``.
        unavailable: Says why the system cannot run on this machine (a driver or a
            server missing), or ``None`` when it can; its cells are then skipped.
        no_storage: Why the storage workload, which measures a SQLite file, does
            not apply to it (``None``: it applies when ``durable``).
    """

    name: str
    label: str
    make: Callable[[str, Path], System]
    durable: bool
    payload_sql: str | None = None
    langgraph: bool = False
    extra: bool = False
    unavailable: Callable[[], str | None] | None = None
    no_storage: str | None = None


def langgraph_available() -> bool:
    """Whether LangGraph and its SQLite checkpointer can be imported."""
    try:
        return (
            importlib.util.find_spec("langgraph") is not None
            and importlib.util.find_spec("langgraph.checkpoint.sqlite") is not None
            and importlib.util.find_spec("aiosqlite") is not None
        )
    except (ModuleNotFoundError, ValueError):
        return False


def _bare(url: str, db_path: Path) -> System:
    from bench.bare import BareLoop

    return BareLoop(url)


def _bare_sqlite(url: str, db_path: Path) -> System:
    from bench.bare import BareLoop

    return BareLoop(url, db_path)


def _agentrt(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtSystem

    return AgentrtSystem(url, db_path)


def _agentrt_budget(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtSystem

    return AgentrtSystem(url, db_path, budget=True)


def _agentrt_rate_limit(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtSystem

    return AgentrtSystem(url, db_path, rate_limited=True)


def _agentrt_async_tool(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtSystem

    return AgentrtSystem(url, db_path, tool="bench.common:add_async")


def _agentrt_effectful(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtSystem

    return AgentrtSystem(url, db_path, idempotent=False)


def _agentrt_postgres(url: str, db_path: Path) -> System:
    from bench.agentrt_bench import AgentrtPostgresSystem

    return AgentrtPostgresSystem(url)  # its store is a fresh PostgreSQL schema, not db_path


def _postgres_unavailable() -> str | None:
    from bench.agentrt_bench import postgres_unavailable

    return postgres_unavailable()


def _langgraph(url: str, db_path: Path) -> System:
    from bench.langgraph_bench import LangGraphSystem

    return LangGraphSystem(url, db_path)


def _langgraph_normal(url: str, db_path: Path) -> System:
    from bench.langgraph_bench import LangGraphSystem

    return LangGraphSystem(url, db_path, synchronous="NORMAL")


def _langgraph_messages(url: str, db_path: Path) -> System:
    from bench.langgraph_bench import LangGraphSystem

    return LangGraphSystem(url, db_path, langchain_messages=True)


_AGENTRT_PAYLOAD = (
    "SELECT (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM events) "
    "+ (SELECT COALESCE(SUM(LENGTH(data)), 0) FROM blobs)"
)
_LANGGRAPH_PAYLOAD = (
    "SELECT (SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints) "
    "+ (SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes)"
)

SYSTEMS: list[SystemDef] = [
    SystemDef("bare", "bare loop (no persistence)", _bare, durable=False),
    SystemDef(
        "bare-sqlite",
        "bare loop + SQLite log",
        _bare_sqlite,
        durable=True,
        payload_sql="SELECT COALESCE(SUM(LENGTH(body)), 0) FROM messages",
    ),
    SystemDef("agentrt", "agentrt Runtime (durable)", _agentrt, True, _AGENTRT_PAYLOAD),
    SystemDef(
        "agentrt-postgres",
        "agentrt Runtime (PostgreSQL)",
        _agentrt_postgres,
        True,
        unavailable=_postgres_unavailable,
        no_storage="its store is a PostgreSQL schema, not a file; it stores the same "
        "encoded events and blobs as on SQLite",
    ),
    SystemDef(
        "agentrt-budget",
        "agentrt, a tenant Budget",
        _agentrt_budget,
        True,
        _AGENTRT_PAYLOAD,
        extra=True,
    ),
    SystemDef(
        "agentrt-rate-limit",
        "agentrt, Model rate limits",
        _agentrt_rate_limit,
        True,
        _AGENTRT_PAYLOAD,
        extra=True,
    ),
    SystemDef(
        "agentrt-async-tool",
        "agentrt, async tool",
        _agentrt_async_tool,
        True,
        _AGENTRT_PAYLOAD,
        extra=True,
    ),
    SystemDef(
        "agentrt-effectful",
        "agentrt, non-idempotent tool",
        _agentrt_effectful,
        True,
        _AGENTRT_PAYLOAD,
        extra=True,
    ),
    SystemDef(
        "langgraph",
        "LangGraph + AsyncSqliteSaver",
        _langgraph,
        True,
        _LANGGRAPH_PAYLOAD,
        langgraph=True,
    ),
    SystemDef(
        "langgraph-normal",
        "LangGraph, synchronous=NORMAL",
        _langgraph_normal,
        True,
        _LANGGRAPH_PAYLOAD,
        langgraph=True,
        extra=True,
    ),
    SystemDef(
        "langgraph-messages",
        "LangGraph, LangChain messages",
        _langgraph_messages,
        True,
        _LANGGRAPH_PAYLOAD,
        langgraph=True,
        extra=True,
    ),
]
"""Every system, in table order."""
