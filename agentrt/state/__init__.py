"""Durable state of the runtime: the storage contract and its backends.

Open a store with :func:`open_store`; every backend implements
:class:`~agentrt.state.base.Store` and passes ``tests/state/conformance.py``.
"""

from __future__ import annotations

from pathlib import Path

from agentrt.errors import UsageError
from agentrt.state.base import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Event,
    EventDraft,
    GcResult,
    NewRun,
    ResourceRecord,
    RunRecord,
    RunStatus,
    RunUpdate,
    SessionRecord,
    Store,
    Usage,
)
from agentrt.state.memory import MemoryHit, MemoryRecord, MemoryStore, NewMemory
from agentrt.state.sqlite import SqliteStore, default_store_path

__all__ = [
    # the contracts
    "MemoryStore",
    "Store",
    # records
    "Event",
    "EventDraft",
    "GcResult",
    "MemoryHit",
    "MemoryRecord",
    "NewMemory",
    "NewRun",
    "ResourceRecord",
    "RunRecord",
    "RunUpdate",
    "SessionRecord",
    "Usage",
    # run statuses
    "ACTIVE_STATUSES",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "RunStatus",
    # backends
    "SqliteStore",
    "default_store_path",
    "open_store",
]


async def open_store(url: str | None = None) -> Store:
    """Open the store a URL or path names.

    Args:
        url: ``None`` for the default SQLite database (see
            :func:`default_store_path`); ``sqlite:///abs/path.db`` or a plain
            file path for SQLite; ``postgresql://...`` is reserved.

    Returns:
        The open store; close it with ``await store.close()``.

    Raises:
        UsageError: The URL names an unsupported or unavailable backend, or the
            database cannot be opened by this version.
    """
    if url is None:
        return await SqliteStore.open(default_store_path())
    scheme, sep, _ = url.partition("://")
    if not sep:
        return await SqliteStore.open(Path(url))
    scheme = scheme.lower()
    if scheme == "sqlite":
        return await SqliteStore.from_url(url)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise UsageError("the PostgreSQL backend is not available yet")
    raise UsageError(
        f"unsupported store URL scheme {scheme!r}: use sqlite:///absolute/path.db or a file path"
    )
