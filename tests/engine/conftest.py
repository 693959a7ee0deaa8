"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentrt.state import SqliteStore


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two connections to one database: two runtimes standing for two processes."""
    first = await SqliteStore.open(tmp_path / "agentrt.db")
    second = await SqliteStore.open(tmp_path / "agentrt.db")
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()
