"""Durable state of the runtime: the storage contract and its backends.

Open a store with ``Store.from_url(url)`` (or :func:`open_store`, which also
knows the default store); ``await`` the result, or ``async with`` it. Every
backend implements :class:`~agentrt.state.base.Store` and passes
``tests/state/conformance.py``: :class:`SqliteStore` (embedded, the default) and
:class:`PostgresStore` (shared by many workers; imported on first use, it needs
``pip install 'agentrt[postgres]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentrt.errors import UsageError
from agentrt.state._pg_url import SCHEMES as _PG_SCHEMES
from agentrt.state.audit import AuditDraft, AuditHead, AuditLog, AuditRecord
from agentrt.state.base import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    Opening,
    ResourceRecord,
    RunBlob,
    RunCursor,
    RunOrder,
    RunRecord,
    RunStatus,
    RunUpdate,
    SessionActivity,
    SessionRecord,
    Store,
    Usage,
)
from agentrt.state.long_term_memory import MemoryHit, MemoryRecord, MemoryStore, NewMemory
from agentrt.state.sqlite import SqliteStore, default_store_path

if TYPE_CHECKING:
    from agentrt.state.postgres import PostgresStore

__all__ = [
    # the contracts
    "AuditLog",
    "MemoryStore",
    "Store",
    # records
    "AuditDraft",
    "AuditHead",
    "AuditRecord",
    "Event",
    "EventDraft",
    "GcResult",
    "MemoryHit",
    "MemoryRecord",
    "NewMemory",
    "NewRun",
    "Opening",
    "ResourceRecord",
    "RunBlob",
    "RunCursor",
    "RunOrder",
    "RunRecord",
    "RunUpdate",
    "SessionActivity",
    "SessionRecord",
    "Usage",
    # run statuses
    "ACTIVE_STATUSES",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "RunStatus",
    # backends
    "PostgresStore",
    "SqliteStore",
    "default_store_path",
    "open_store",
]


def open_store(url: str | None = None, *, read_only: bool = False) -> Opening[Store]:
    """Open the store a URL or path names (what ``Store.from_url`` does), or the default.

    Args:
        url: ``None`` for the default SQLite database (see
            :func:`default_store_path`); ``sqlite:///abs/path.db`` or a plain
            file path for SQLite; ``postgresql://user@host:5432/db?schema=NAME``
            for PostgreSQL (see :meth:`PostgresStore.from_url`).
        read_only: Only read: create, migrate and write nothing (for commands
            that only read; they work on read-only media).

    Returns:
        ``await`` it for the open store (close it with ``await store.close()``),
        or ``async with`` it to have it closed on exit.

    Raises:
        StoreError: The store cannot be opened or used (see
            :meth:`SqliteStore.open`, :meth:`PostgresStore.open`).
        UsageError: The URL names an unsupported backend, or PostgreSQL without
            its driver installed.
    """
    if url is None:
        path: str | Path = default_store_path()
    else:
        scheme, sep, _ = url.partition("://")
        if sep:
            return _open_url(scheme.lower(), url, read_only)
        path = url  # str, not Path: Path("") would be the working directory.
    return Opening(lambda: SqliteStore.open(path, read_only=read_only))


def _open_url(scheme: str, url: str, read_only: bool) -> Opening[Store]:
    if scheme == "sqlite":
        return SqliteStore.from_url(url, read_only=read_only)
    if scheme in _PG_SCHEMES:
        from agentrt.state.postgres import PostgresStore  # UsageError without psycopg

        return PostgresStore.from_url(url, read_only=read_only)
    if scheme.startswith(("postgresql+", "postgres+")):
        raise UsageError(
            f"unsupported store URL scheme {scheme!r}: the PostgreSQL store speaks "
            "psycopg 3; use postgresql://user@host:5432/database"
        )
    raise UsageError(
        f"unsupported store URL scheme {scheme!r}: use sqlite:///absolute/path.db, "
        "postgresql://user@host:5432/database or a file path"
    )


def __getattr__(name: str) -> Any:
    """:class:`PostgresStore` on first use: importing the store does not need psycopg."""
    if name == "PostgresStore":
        from agentrt.state.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
