"""agentrt under test: an embedded ``Runtime`` over its durable store, SQLite or PostgreSQL.

:class:`AgentrtSystem` keeps its store in a SQLite file;
:class:`AgentrtPostgresSystem` is the same runtime with its store in a fresh
schema of a PostgreSQL database (``AGENTRT_BENCH_POSTGRES``, default the local
test server), made on entry and dropped on exit.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

from agentrt.engine.runtime import Runtime
from agentrt.errors import UsageError
from agentrt.spec import Resource, parse_resource
from agentrt.state._pg_url import connection_kwargs, parse_url, shown
from bench.common import INSTRUCTIONS, MODEL_NAME

__all__ = [
    "POSTGRES_DEFAULT",
    "POSTGRES_ENV",
    "AgentrtPostgresSystem",
    "AgentrtSystem",
    "postgres_base",
    "postgres_unavailable",
    "resource_docs",
    "resources",
]

AGENT = "calc"

POSTGRES_ENV = "AGENTRT_BENCH_POSTGRES"
"""The environment variable naming the PostgreSQL database, as a URL without a schema."""

POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test?connect_timeout=5"
"""The database used without :data:`POSTGRES_ENV`: the local test server."""


def resources(
    url: str,
    *,
    tool: str = "bench.common:add",
    idempotent: bool = True,
    rate_limits: dict[str, int] | None = None,
) -> list[Resource]:
    """The Model (the test server over HTTP, with ``rate_limits`` if given), the ``add``
    Tool and the Agent."""
    docs = resource_docs(url, tool=tool, idempotent=idempotent)
    if rate_limits is not None:
        docs[0]["spec"]["rate_limits"] = rate_limits
    return [parse_resource(doc) for doc in docs]


def resource_docs(
    url: str, *, tool: str = "bench.common:add", idempotent: bool = True
) -> list[dict[str, Any]]:
    """The documents of :func:`resources`, as ``POST /v1/resources`` takes them."""
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
    return [{"apiVersion": "agentrt.dev/v1", **doc} for doc in docs]


BUDGET = parse_resource(
    {
        "apiVersion": "agentrt.dev/v1",
        "kind": "Budget",
        "metadata": {"name": "bench"},
        "spec": {"period": "month", "max_tokens": 10**15},
    }
)
"""A tenant Budget no benchmark comes near: what reserving and settling costs."""

RATE_LIMITS = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12}
"""Model rate limits no benchmark comes near: what taking from the bucket costs."""


class AgentrtSystem:
    """``Runtime`` over the store at ``store``; :meth:`run` is ``rt.run``.

    Args:
        url: The model server's base URL.
        store: The store: a SQLite database file, or any store URL.
        tool: ``module:function`` of the tool (a sync ``add`` by default).
        idempotent: Declare the tool idempotent (agentrt then need not commit its
            result before going on); ``False`` treats it as having external effects.
        budget: Apply a tenant ``Budget`` too, so that every model step reserves its
            worst case in the store's ledger and settles it (its limit never near).
        rate_limited: Give the Model ``rate_limits`` too, so that every model call
            takes its turn from the Model's bucket in the store (never waiting).
    """

    def __init__(
        self,
        url: str,
        store: Path | str,
        *,
        tool: str = "bench.common:add",
        idempotent: bool = True,
        budget: bool = False,
        rate_limited: bool = False,
    ) -> None:
        self.store = store
        self._url = url
        self._tool = tool
        self._idempotent = idempotent
        self._budget = budget
        self._rate_limited = rate_limited
        self._rt: Runtime | None = None

    async def __aenter__(self) -> AgentrtSystem:
        rt = Runtime(str(self.store), resume_interrupted=False)
        await rt.start()
        try:
            docs = resources(
                self._url, tool=self._tool, idempotent=self._idempotent,
                rate_limits=RATE_LIMITS if self._rate_limited else None,
            )  # fmt: skip
            await rt.apply([*docs, BUDGET] if self._budget else docs)
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


def postgres_base() -> str:
    """The PostgreSQL database the bench uses: :data:`POSTGRES_ENV`, else the default."""
    return os.environ.get(POSTGRES_ENV) or POSTGRES_DEFAULT


def postgres_unavailable(base: str | None = None) -> str | None:
    """Why :class:`AgentrtPostgresSystem` cannot run here (no driver, no server), or
    ``None`` when a connection to ``base`` (default :func:`postgres_base`) succeeds."""
    base = base or postgres_base()
    what = "agentrt-postgres"
    try:
        import psycopg
    except ImportError:
        return f"{what}: psycopg not installed: pip install -e '.[postgres]'"
    try:
        conninfo = parse_url(base)[0]
        with psycopg.connect(conninfo, **connection_kwargs(conninfo, None)) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, UsageError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"{shown(base)} ({POSTGRES_ENV} names another)"
        return f"{what}: PostgreSQL unreachable at {where}: {reason}"
    return None


class AgentrtPostgresSystem(AgentrtSystem):
    """:class:`AgentrtSystem` with its store in a fresh schema on PostgreSQL.

    The store makes the schema when the runtime starts; :meth:`__aexit__` drops
    it with everything in it, so every opening starts empty.

    Args:
        url: The model server's base URL.
        base: The database, a ``postgresql://`` URL without a schema (default
            :func:`postgres_base`).
        tool: As for :class:`AgentrtSystem`.
        idempotent: As for :class:`AgentrtSystem`.
    """

    def __init__(
        self,
        url: str,
        base: str | None = None,
        *,
        tool: str = "bench.common:add",
        idempotent: bool = True,
    ) -> None:
        self.base = base or postgres_base()
        self.schema = f"agentrt_bench_{secrets.token_hex(4)}"
        store = f"{self.base}{'&' if '?' in self.base else '?'}schema={self.schema}"
        super().__init__(url, store, tool=tool, idempotent=idempotent)

    async def __aenter__(self) -> AgentrtPostgresSystem:
        try:
            await super().__aenter__()
        except BaseException:
            await self._drop()  # the store may have made the schema before it failed
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            await self._drop()

    async def _drop(self) -> None:
        import psycopg
        from psycopg import sql

        conninfo = parse_url(self.base)[0]
        kwargs = connection_kwargs(conninfo, None)  # autocommit and a connect timeout
        async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            await conn.execute(drop)
