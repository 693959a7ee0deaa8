"""What only the PostgreSQL store has: URLs and schemas, an injected pool, migrations
under an advisory lock, clear errors for a server it cannot use, claims that skip
locked rows, and connections lost under it; the conformance suite runs on it in
tests/state/test_conformance.py.

Every test here uses a schema of its own on the test server, dropped after it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentrt.errors import StoreInvalid, StoreUnavailable, UsageError
from agentrt.state import EventDraft, NewRun, Store, open_store
from tests.pg import URL, admin, fresh_schema, url_of

psycopg = pytest.importorskip("psycopg", reason="SKIPPED LOUDLY: the PostgreSQL tests need psycopg")

from agentrt.state import PostgresStore  # noqa: E402  (after the loud skip without psycopg)
from agentrt.state._pg_schema import MARKER, MIGRATIONS, lock_key  # noqa: E402
from agentrt.state._pg_watch import payload_of  # noqa: E402
from agentrt.state._run_query import count_sql, list_sql  # noqa: E402
from tests.state.run_listings import counts, listings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def draft(run_id: str, created_at: float = 1.0, **kw: Any) -> NewRun:
    return NewRun(id=run_id, namespace="default", agent="helper", created_at=created_at, **kw)


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name on the test server (nothing made in it yet), dropped after."""
    with fresh_schema() as name:
        yield name


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore.from_url(url_of(schema)) as opened:
        yield opened


def _with(option: str) -> str:
    """The test server's URL with one more query option."""
    return f"{URL}{'&' if '?' in URL else '?'}{option}"


def _sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    with admin() as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []


# --- URLs and schemas ------------------------------------------------------------------


async def test_a_url_names_the_schema_which_is_made_and_holds_the_tables(schema: str) -> None:
    url = url_of(schema).replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    async with Store.from_url(url) as store:
        assert isinstance(store, PostgresStore)
        assert store.schema == schema and store.local_dir is None
        assert "s3cret" not in repr(store) and "s3cret" not in store.name
        await store.create_run(draft("r"))
    tables = {t for (t,) in _sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", schema)}
    assert {"schema_version", "runs", "events", "blobs", "memories", "run_blobs"} <= tables
    versions = _sql(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
    assert [v for (v,) in versions] == [m.number for m in MIGRATIONS]
    marker = f"SELECT obj_description('\"{schema}\".schema_version'::regclass, 'pg_class')"
    assert _sql(marker) == [(MARKER,)]
    # open_store takes the same URLs; a second open migrates nothing.
    async with open_store(url_of(schema)) as again:
        assert await again.get_run("r") is not None


async def test_options_search_path_selects_an_existing_schema(schema: str) -> None:
    _sql(f'CREATE SCHEMA "{schema}"')
    async with Store.from_url(_with(f"options=-csearch_path%3D{schema}")) as store:
        assert isinstance(store, PostgresStore) and store.schema == schema
        await store.create_run(draft("r"))
    assert _sql(f'SELECT id FROM "{schema}".runs') == [("r",)]
    missing = _with(f"options=-csearch_path%3D{schema}_nowhere")
    with pytest.raises(StoreUnavailable, match="has no schema to keep its tables in"):
        await Store.from_url(missing)


async def test_malformed_urls_are_usage_errors() -> None:
    for url, says in [
        (_with("schema=Bad-Name"), "plain identifier"),
        (_with("pool_max_size=many"), "whole number"),
        (_with("no_such_option=1"), "bad PostgreSQL connection string"),
    ]:
        with pytest.raises(UsageError, match=says):
            await Store.from_url(url)
    with pytest.raises(UsageError, match="one of the two"):
        await PostgresStore.open()


# --- an injected pool ------------------------------------------------------------------


async def test_an_injected_pool_is_used_and_left_open(schema: str) -> None:
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    _sql(f'CREATE SCHEMA "{schema}"')
    # Not autocommit, and dict rows: the store copes with the caller's choices.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        URL,
        kwargs={"options": f"-c search_path={schema}", "row_factory": dict_row},
        min_size=1,
        max_size=3,
        open=False,
    )
    await pool.open()
    try:
        async with await PostgresStore.open(pool=pool) as store:
            assert store.schema == schema
            await store.create_run(draft("r"), [EventDraft("e", {"n": 1}, 1.0)])
            async with store.watch() as watch:
                await store.append_events("r", [EventDraft("e", {"n": 2}, 2.0)], expected_seq=1)
                assert await watch.changed({"r"}, timeout=5) == {"r"}
            assert [e.data for e in await store.read_events("r")] == [{"n": 1}, {"n": 2}]
        assert not pool.closed, "the caller's pool stays open"
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM events")).fetchone()
            assert row == {"n": 2}
        with pytest.raises(UsageError, match="search_path"):
            await PostgresStore.open(pool=pool, schema="elsewhere")
    finally:
        await pool.close()


# --- migrations --------------------------------------------------------------------------


async def test_opening_waits_for_the_migration_lock(schema: str) -> None:
    with admin() as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(schema, "migrate"),))
        opening = asyncio.ensure_future(PostgresStore.from_url(url_of(schema)))
        await asyncio.sleep(0.5)
        assert not opening.done(), "another process is migrating: the store waits"
        holder.execute("SELECT pg_advisory_unlock(%s)", (lock_key(schema, "migrate"),))
        store = await asyncio.wait_for(opening, 10)
    await store.close()


async def test_workers_opening_a_new_schema_together_migrate_it_once(schema: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.from_url(url_of(schema)) for _ in range(6)))
    try:
        versions = _sql(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
        assert [v for (v,) in versions] == [m.number for m in MIGRATIONS]
        await stores[0].create_run(draft("r"))
        for store in stores:
            assert await store.get_run("r") is not None
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused_untouched(store: PostgresStore, schema: str) -> None:
    await store.create_run(draft("r"))
    _sql(f'INSERT INTO "{schema}".schema_version VALUES (999, 0)')
    with pytest.raises(StoreInvalid, match="schema version 999, newer than this agentrt"):
        await PostgresStore.from_url(url_of(schema))
    assert _sql(f'SELECT count(*) FROM "{schema}".runs') == [(1,)]


async def test_another_applications_tables_are_refused(schema: str) -> None:
    _sql(f'CREATE SCHEMA "{schema}"')
    _sql(f'CREATE TABLE "{schema}".schema_version (version INTEGER)')
    with pytest.raises(StoreInvalid, match="not agentrt's"):
        await PostgresStore.from_url(url_of(schema))
    _sql(f'DROP TABLE "{schema}".schema_version')
    _sql(f'CREATE TABLE "{schema}".runs (id TEXT)')
    with pytest.raises(StoreInvalid, match="another application"):
        await PostgresStore.from_url(url_of(schema))
    tables = _sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", schema)
    assert tables == [("runs",)], "the failed migration left nothing behind"


async def test_a_read_only_store_migrates_and_writes_nothing(schema: str) -> None:
    with pytest.raises(StoreInvalid, match="has no agentrt store"):
        await PostgresStore.from_url(url_of(schema), read_only=True)
    async with PostgresStore.from_url(url_of(schema)) as writer:
        await writer.create_run(draft("r"))
    async with PostgresStore.from_url(url_of(schema), read_only=True) as reader:
        assert await reader.get_run("r") is not None
        with pytest.raises(StoreUnavailable, match="read-only"):
            await reader.create_run(draft("s"))


# --- a server it cannot use -----------------------------------------------------------------


def _nowhere() -> str:
    """A URL of a port nobody listens on, with a password that must never be shown."""
    return "postgresql://postgres:s3cret@127.0.0.1:1/test?schema=x"


async def test_an_unreachable_server_is_one_clear_line() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await Store.from_url(_nowhere())
    message = str(caught.value)
    assert "cannot be reached" in message and "127.0.0.1" in message
    assert "\n" not in message and "s3cret" not in message


def test_the_command_line_says_it_in_one_line_with_exit_code_4() -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "runs", "list", "--store", _nowhere()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert cli.returncode == 4, cli.stderr
    assert cli.stderr.startswith("error: the store postgresql://postgres:***@127.0.0.1:1/test")
    assert len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr
    assert "s3cret" not in cli.stderr


_WITHOUT_PSYCOPG = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
sys.argv[0] = "agentrt"
from agentrt.cli.main import main
sys.exit(main())
"""


def test_without_psycopg_the_error_says_what_to_install() -> None:
    cli = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PSYCOPG, "runs", "list", "--store", _nowhere()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert cli.returncode == 2, cli.stderr
    assert "pip install 'agentrt[postgres]'" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr


# --- claims and connections lost --------------------------------------------------------------


async def test_a_claim_skips_the_runs_another_claimer_is_taking(
    store: PostgresStore, schema: str
) -> None:
    for i in range(3):
        await store.create_run(draft(f"r{i}", float(i)))
    with admin() as other:
        with other.transaction():
            other.execute(f"SELECT 1 FROM \"{schema}\".runs WHERE id = 'r0' FOR UPDATE")
            claimed = await asyncio.wait_for(store.claim_runs("A", 30.0, now=10.0), 5)
            assert [r.id for r in claimed] == ["r1", "r2"], "r0 is skipped, not waited for"
        later = await store.claim_runs("B", 30.0, now=10.0)
    assert [(r.id, r.lease_owner, r.lease_token) for r in later] == [("r0", "B", 1)]


def _kill(application_name: str) -> int:
    """Terminate the server's connections of one test's store; how many there were."""
    rows = _sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        application_name,
    )
    return len(rows)


async def test_reads_and_writes_go_on_after_the_pooled_connections_die(schema: str) -> None:
    name = f"agentrt_test_{secrets.token_hex(4)}"
    url = f"{url_of(schema)}&application_name={name}&pool_min_size=3"
    async with PostgresStore.from_url(url) as store:
        await store.create_run(draft("r"))
        assert _kill(name) == 3
        assert (await store.get_run("r")) is not None, "a read is made once more"
        assert _kill(name) >= 1
        assert await store.append_events("r", [EventDraft("e", {}, 2.0)], expected_seq=0) == 1
        assert len(await store.read_events("r")) == 1


async def test_a_watch_hears_writes_again_after_its_connection_is_lost(schema: str) -> None:
    name = f"agentrt_test_{secrets.token_hex(4)}"
    url = f"{url_of(schema)}&application_name={name}"
    async with PostgresStore.from_url(url) as store, PostgresStore.from_url(url_of(schema)) as peer:
        await store.create_run(draft("r"))
        async with store.watch() as watch:
            listening = _sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND query LIKE 'LISTEN%%'",
                name,
            )
            assert len(listening) == 1
            # Writes sent while it was away are lost: it reports every run it waits on.
            assert await watch.changed({"r"}, timeout=10) == {"r"}
            waiting = asyncio.ensure_future(watch.changed({"r"}, timeout=10))
            await asyncio.sleep(0.1)
            await peer.append_events("r", [EventDraft("e", {}, 2.0)], expected_seq=0)
            assert await waiting == {"r"}, "the reconnected listener hears the peer's write"


async def test_gc_and_the_writes_that_refer_to_blobs_exclude_each_other(
    store: PostgresStore, schema: str
) -> None:
    # Else gc could delete a blob a write found stored and refers to before it commits.
    key = lock_key(schema, "blobs")
    for run_id in ("r", "s", "t"):
        await store.create_run(draft(run_id))
    with admin() as sweeping, sweeping.transaction():
        sweeping.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        big = store.append_events("r", [EventDraft("big", {"x": "y" * 5000}, 1.0)], expected_seq=0)
        appending = asyncio.ensure_future(big)
        putting = asyncio.ensure_future(store.put_blob(b"z", run_id="s", name="n", step=1))
        await asyncio.sleep(0.3)
        assert not appending.done() and not putting.done(), "both wait for the sweep"
        small = EventDraft("small", {"x": 1}, 1.0)
        assert await asyncio.wait_for(store.append_events("t", [small], expected_seq=0), 5) == 1
    assert await asyncio.wait_for(appending, 5) == 1
    await asyncio.wait_for(putting, 5)
    with admin() as writing, writing.transaction():
        writing.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))
        collecting = asyncio.ensure_future(store.gc(finished_before=1e12))
        await asyncio.sleep(0.3)
        assert not collecting.done(), "the sweep waits for the write to commit"
    await asyncio.wait_for(collecting, 5)


async def test_queries_use_their_indexes(store: PostgresStore, schema: str) -> None:
    from agentrt.state import _pg_leases, _pg_queue

    with admin() as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute("SET enable_seqscan = off")

        def plan(query: str, params: Any = None) -> str:
            return " ".join(row[0] for row in conn.execute("EXPLAIN " + query, params))

        # A queue as it is: many runs waiting over a few tenants and classes, and the
        # oldest claimable is taken in creation order, across tenants.
        conn.execute(
            "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, priority) "
            "SELECT 'run_' || i, 't' || (i % 7), 'bot', 'queued', i, i, i % 3 - 1 "
            "FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE runs")
        claim = {"owner": "w", "expires": 1.0, "ttl": 1.0, "now": 0.0, "limit": 5}
        assert "runs_claimable" in plan(_pg_leases._CLAIM, claim)
        # The scheduler's read: a skip scan of the queue's index, and the running runs.
        heads = plan(_pg_queue._HEADS, (0.0, 10))
        assert "runs_queue" in heads and "Seq Scan" not in heads, heads
        assert "runs_running" in plan(_pg_queue._RUNNING, (0.0,))
        assert "memories_search" in plan(
            "SELECT id FROM memories WHERE search @@ to_tsquery('english', 'deploy')"
        )
        assert "runs_parent" in plan("SELECT id FROM runs WHERE parent_run = 'p'")


async def test_run_listings_use_their_indexes(store: PostgresStore, schema: str) -> None:
    with admin() as conn:
        conn.execute(f"SET search_path = {schema}")
        # Tenants' runs as they are: many per tenant, few waiting, few of one parent or
        # session; the planner chooses by the statistics ANALYZE gathers.
        conn.execute("INSERT INTO sessions (id, namespace, created_at) VALUES ('s', 't', 0)")
        conn.execute(
            "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, principal, "
            "parent_run, session_id, turn) SELECT 'run_' || i, CASE WHEN i % 50 = 0 THEN 't' "
            "ELSE 'u' || (i % 49) END, 'a' || (i % 20), CASE WHEN i % 500 = 0 THEN "
            "'waiting_approval' ELSE 'succeeded' END, i, i, 'key:p' || (i % 50), "
            "CASE WHEN i % 1000 = 0 THEN 'run_p' END, CASE WHEN i % 2000 = 0 THEN 's' END, "
            "CASE WHEN i % 2000 = 0 THEN i END FROM generate_series(1, 20000) AS i"
        )
        # And one tenant's busy Agent, whose runs are updated in another order than made.
        conn.execute(
            "INSERT INTO runs (id, namespace, agent, status, created_at, updated_at, principal) "
            "SELECT 'run_w' || i, 'w', 'bot', CASE WHEN i % 500 = 0 THEN 'waiting_approval' "
            "ELSE 'succeeded' END, i, 20000 + (i * 7919) % 4000, 'key:w' || (i % 4) "
            "FROM generate_series(1, 4000) AS i"
        )
        conn.execute("ANALYZE runs")
        for where, index in listings((15000.0, "run_15000")):
            query = list_sql(where, 50, "postgresql")
            assert query is not None
            rows = conn.execute("EXPLAIN " + query[0], query[1]).fetchall()
            shown = " ".join(row[0] for row in rows)
            used = rf"(Index Scan (Backward )?using|Bitmap Index Scan on) ({index}) "
            assert re.search(used, shown), (where, shown)
        for where, index in counts():
            query = count_sql(where, "postgresql")
            assert query is not None
            rows = conn.execute("EXPLAIN " + query[0], query[1]).fetchall()
            shown = " ".join(row[0] for row in rows)
            used = rf"(Index (Only )?Scan using|Bitmap Index Scan on) ({index}) "
            assert re.search(used, shown), (where, shown)


def test_a_notification_too_large_names_no_runs() -> None:
    assert payload_of("n", ["a", "b"]) == '["n",["a","b"]]'
    assert payload_of("n", [f"run_{i:06d}" for i in range(1000)]) == '["n",null]'


async def test_a_nul_character_in_text_is_a_usage_error_not_a_driver_error(schema: str) -> None:
    from agentrt.state.base import SessionRecord

    async with Store.from_url(url_of(schema)) as store:
        with pytest.raises(UsageError, match="NUL character"):
            await store.create_session(SessionRecord("a\x00b", "default", 1.0))
        with pytest.raises(UsageError, match="NUL character"):
            await store.get_resource("Agent", "default", "bot\x00")
        # The store goes on serving.
        assert await store.get_resource("Agent", "default", "bot") is None
