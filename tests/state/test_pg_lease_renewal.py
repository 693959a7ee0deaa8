"""A worker's lease renewals do not queue behind its work: they go over a connection
of their own, so a pool whose every connection is busy (a crowd of steps waiting on
one tenant's account rows, a slow query) never lets a live worker's leases run out
and its runs be taken over by another worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agentrt.state import NewRun, PostgresStore
from tests.pg import URL, admin, fresh_schema, url_of

pytest.importorskip("psycopg", reason="SKIPPED LOUDLY: the PostgreSQL tests need psycopg")


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def _new(run_id: str) -> NewRun:
    return NewRun(id=run_id, namespace="default", agent="bot", created_at=1.0)


async def _held(pool: Any, taken: asyncio.Event, release: asyncio.Event) -> None:
    async with pool.connection():
        taken.set()
        await release.wait()


async def test_leases_are_renewed_while_every_pooled_connection_is_busy(schema: str) -> None:
    async with PostgresStore.from_url(f"{url_of(schema)}&pool_max_size=1") as store:
        await store.create_run(_new("r"))
        [claimed] = await store.claim_runs("w", 5.0, now=10.0)
        taken, release = asyncio.Event(), asyncio.Event()
        busy = asyncio.create_task(_held(store._run.pool, taken, release))
        await taken.wait()
        try:
            held = await asyncio.wait_for(store.renew_leases(["r"], "w", 5.0, now=12.0), 10)
            assert held == {"r"}
            assert await asyncio.wait_for(store.renew_lease("r", "w", 5.0, now=13.0), 10)
        finally:
            release.set()
            await busy
        run = await store.get_run("r")
        assert run is not None and run.lease_expires == 18.0
        assert run.lease_token == claimed.lease_token, "a renewal is the same grant"


async def test_an_injected_pool_renews_over_a_connection_made_like_its_own(schema: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    with admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        URL, kwargs={"options": f"-c search_path={schema}"}, min_size=1, max_size=1, open=False
    )
    await pool.open()
    try:
        async with await PostgresStore.open(pool=pool) as store:
            await store.create_run(_new("r"))
            await store.claim_runs("w", 5.0, now=10.0)
            taken, release = asyncio.Event(), asyncio.Event()
            busy = asyncio.create_task(_held(pool, taken, release))
            await taken.wait()
            try:
                held = await asyncio.wait_for(store.renew_leases(["r"], "w", 5.0, now=12.0), 10)
            finally:
                release.set()
                await busy
            assert held == {"r"}
        assert not pool.closed
    finally:
        await pool.close()


async def test_a_renewal_passes_over_a_run_a_write_is_locking(schema: str) -> None:
    """The other leases are renewed at once; the locked run counts as held (the write
    locking it, if the holder's, extends its lease itself)."""
    async with PostgresStore.from_url(url_of(schema)) as store:
        for run_id in ("busy", "free", "theirs"):
            await store.create_run(_new(run_id))
        await store.acquire_lease("busy", "w", 5.0, now=10.0)
        await store.acquire_lease("free", "w", 5.0, now=10.0)
        await store.acquire_lease("theirs", "v", 5.0, now=10.0)
        with admin() as other, other.transaction():
            other.execute(f"SELECT 1 FROM \"{schema}\".runs WHERE id = 'busy' FOR UPDATE")
            ids = ["busy", "free", "theirs"]
            held = await asyncio.wait_for(store.renew_leases(ids, "w", 5.0, now=12.0), 5)
            assert held == {"busy", "free"}
        leases = {r: (await store.get_run(r)) for r in ids}
        assert {r: run.lease_expires for r, run in leases.items() if run} == {
            "busy": 15.0,
            "free": 17.0,
            "theirs": 15.0,
        }
