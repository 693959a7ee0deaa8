"""The store conformance suite (tests/state/conformance.py) on every backend, the same
checks: SQLite in two configurations, and PostgreSQL.

Each check gets a fresh, empty store. The PostgreSQL stores of this module share one
schema, emptied before each check, and a peer is another store (its own pool) on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agentrt.state import SqliteStore, Store
from tests.pg import empty, url_of

from .conformance import CHECKS, Harness, check_id

SQLITE: dict[str, dict[str, Any]] = {
    "sqlite": {},
    # Small enough that ordinary payloads of a few hundred bytes go to the blob table.
    "sqlite-full-small-inline": {"durability": "full", "inline_limit": 256},
}
BACKENDS = [*SQLITE, "postgresql"]


async def _count(store: Any) -> int:
    rows = await store._query("SELECT COUNT(*) FROM blobs")
    return int(rows[0][0])


async def _sqlite(path: Path, options: dict[str, Any]) -> AsyncIterator[Harness]:
    store = await SqliteStore.open(path, **options)

    async def open_peer() -> Store:
        return await SqliteStore.open(path, **options)

    try:
        yield Harness(store=store, count_blobs=lambda: _count(store), open_peer=open_peer)
    finally:
        await store.close()


async def _postgresql(schema: str) -> AsyncIterator[Harness]:
    from agentrt.state import PostgresStore

    url = url_of(schema)
    store = await PostgresStore.from_url(url)
    await empty(schema)

    async def open_peer() -> Store:
        return await PostgresStore.from_url(url)

    try:
        yield Harness(store=store, count_blobs=lambda: _count(store), open_peer=open_peer)
    finally:
        await store.close()


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param in SQLITE:
        made = _sqlite(tmp_path / "conformance.db", SQLITE[request.param])
    else:
        made = _postgresql(request.getfixturevalue("pg_module_schema"))
    async for h in made:
        yield h


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
async def test_conformance(check: Callable[[Harness], Awaitable[None]], harness: Harness) -> None:
    await check(harness)
