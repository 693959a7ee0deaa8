"""The audit log caught tampered with, on both stores: rows changed directly by SQL (the
append-only triggers dropped first, as someone with the database's keys would) fail
verification naming the first bad record and why; an untouched log verifies.

Each test builds one tenant's log through the store (a run's events, records on their
own, a resource change) beside another tenant's, then tampers with one record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentrt.observe.audit import record_hash
from agentrt.state import SqliteStore, Store
from agentrt.state.audit import AuditDraft, AuditRecord, verify_audit
from agentrt.state.base import EventDraft, NewRun
from tests.pg import empty, url_of

TENANT = "acme"
RECORDS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = await SqliteStore.open(tmp_path / "audit.db")
    else:
        from agentrt.state import PostgresStore

        schema = request.getfixturevalue("pg_module_schema")
        opened = await PostgresStore.from_url(url_of(schema))
        await empty(schema)
    try:
        await _log(opened)
        yield opened
    finally:
        await opened.close()


async def _log(s: Store) -> None:
    """Records 1..6 of TENANT (and one of another tenant)."""
    submitted = AuditDraft("run.submitted", "key:ann", {"input": "hi"})
    await s.create_run(
        NewRun("r1", TENANT, "bot", 10.0), [EventDraft("run.created", {}, 10.0, audit=submitted)]
    )
    calls = [
        EventDraft("tool.call", {}, 11.0 + n, n, audit=AuditDraft("tool.call", "key:ann", {"n": n}))
        for n in (1, 2)
    ]
    await s.append_events("r1", calls, expected_seq=1)
    await s.append_audit(
        TENANT, [AuditDraft("tool.approved", "ops"), AuditDraft("tool.denied")], now=14
    )
    audit = AuditDraft("resource.applied", "key:ops", {"kind": "Tool", "name": "t"})
    await s.put_resource("Tool", TENANT, "t", {"spec": {}}, now=15.0, audit=audit)
    await s.append_audit("other", [AuditDraft("tool.call", "key:bob")], now=16.0)


async def sql(s: Store, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL on the store's database, as someone tampering with it would."""
    if not isinstance(s, SqliteStore):
        statement = statement.replace("?", "%s")
    rows: list[tuple[Any, ...]] = await s._query(statement, params)  # type: ignore[attr-defined]
    return rows


async def unguard(s: Store) -> None:
    """Drop what refuses changes to the log: a tamperer with the database's keys can."""
    if isinstance(s, SqliteStore):
        await sql(s, "DROP TRIGGER audit_no_update")
        await sql(s, "DROP TRIGGER audit_no_delete")
    else:
        await sql(s, "ALTER TABLE audit DISABLE TRIGGER audit_no_change")


async def move(s: Store, seq: int, to: int) -> None:
    await sql(s, "UPDATE audit SET seq = ? WHERE namespace = ? AND seq = ?", to, TENANT, seq)


async def insert(s: Store, r: AuditRecord) -> None:
    await sql(
        s,
        "INSERT INTO audit (namespace, seq, ts, kind, principal, run_id, agent, event_seq, ref, "
        "body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        r.namespace, r.seq, r.ts, r.kind, r.principal, r.run_id, r.agent, r.event_seq, r.ref,
        r.body_json, r.prev_hash, r.hash,
    )  # fmt: skip


async def record(s: Store, seq: int) -> AuditRecord:
    (found,) = await s.list_audit(TENANT, after=seq - 1, limit=1)
    assert found.seq == seq
    return found


async def broken_at(s: Store) -> tuple[int, str, str]:
    verdict = await verify_audit(s, TENANT)
    assert verdict.broken is not None, "the tampered log verified"
    assert (await verify_audit(s, "other")).ok  # another tenant's chain is its own
    return verdict.broken.seq, verdict.broken.kind, verdict.message()


async def test_an_untouched_log_verifies(store: Store) -> None:
    verdict = await verify_audit(store, TENANT)
    assert verdict.ok and verdict.records == RECORDS
    head = await store.audit_head(TENANT)
    assert head is not None and verdict.head == head.hash
    assert verdict.message() == f"audit log of {TENANT!r}: 6 records intact, head {head.hash}"
    assert (await verify_audit(store, "nobody")).message() == "audit log of 'nobody': no records"
    assert (await verify_audit(store, TENANT, page=2)).ok  # read a page at a time


async def test_the_log_refuses_changes(store: Store) -> None:
    for statement in ("UPDATE audit SET principal = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            await sql(store, statement)
    assert (await verify_audit(store, TENANT)).ok


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("body", '{"input":"rm -rf /"}'),
        ("principal", "key:mallory"),
        ("kind", "tool.approved"),
        ("ts", 99.5),
        ("run_id", "r9"),
        ("hash", "0" * 64),
    ],
)
async def test_an_edited_record_is_named(store: Store, column: str, value: Any) -> None:
    await unguard(store)
    await sql(
        store, f"UPDATE audit SET {column} = ? WHERE namespace = ? AND seq = 3", value, TENANT
    )
    seq, kind, message = await broken_at(store)
    assert (seq, kind) == (3, "altered")
    assert message == (
        f"audit log of {TENANT!r} is broken at record 3: its hash does not match its "
        "contents: it was edited or forged"
    )


async def test_an_edited_link_is_named(store: Store) -> None:
    await unguard(store)
    await sql(
        store, "UPDATE audit SET prev_hash = ? WHERE namespace = ? AND seq = 4", "f" * 64, TENANT
    )
    assert (await broken_at(store))[:2] == (4, "unlinked")


@pytest.mark.parametrize("seq", [1, 3, RECORDS])
async def test_a_removed_record_is_named(store: Store, seq: int) -> None:
    await unguard(store)
    await sql(store, "DELETE FROM audit WHERE namespace = ? AND seq = ?", TENANT, seq)
    got, kind, message = await broken_at(store)
    assert (got, kind) == (seq, "missing")
    assert f"broken at record {seq}: it is not there" in message


async def test_a_forged_record_in_the_middle_is_named(store: Store) -> None:
    """Records 4.. move up one and a forged record 4 goes in, its hash copied from the
    record it displaced."""
    displaced = await record(store, 4)
    await unguard(store)
    for seq in range(RECORDS, 3, -1):
        await move(store, seq, seq + 1)
    forged = replace(displaced, kind="tool.approved", principal="key:mallory")
    await insert(store, forged)
    assert (await broken_at(store))[:2] == (4, "altered")


async def test_a_forged_record_hashed_right_is_named_where_the_chain_breaks(store: Store) -> None:
    """A forgery whose own hash is right is caught at the next record, which does not
    follow it (nothing in a record without a secret tells a forger's hash from the
    store's): the message says a record was inserted before it."""
    after = await record(store, 3)
    await unguard(store)
    for seq in range(RECORDS, 3, -1):
        await move(store, seq, seq + 1)
    forged = replace(
        after, seq=4, kind="tool.approved", principal="key:mallory", event_seq=None,
        prev_hash=after.hash,
    )  # fmt: skip
    await insert(store, replace(forged, hash=record_hash(forged)))
    seq, kind, message = await broken_at(store)
    assert (seq, kind) == (5, "unlinked")
    assert "a record was inserted, removed or moved before it" in message


async def test_a_record_added_past_the_head_is_named(store: Store) -> None:
    last = await record(store, RECORDS)
    await unguard(store)
    forged = replace(last, seq=RECORDS + 1, kind="tool.approved", prev_hash=last.hash)
    await insert(store, replace(forged, hash=record_hash(forged)))
    seq, kind, message = await broken_at(store)
    assert (seq, kind) == (RECORDS + 1, "unheaded")
    assert "it is past the log's head (record 6)" in message


async def test_the_last_record_edited_and_hashed_again_is_named(store: Store) -> None:
    last = await record(store, RECORDS)
    await unguard(store)
    edited = replace(last, principal="key:mallory")
    await sql(
        store,
        "UPDATE audit SET principal = ?, hash = ? WHERE namespace = ? AND seq = ?",
        edited.principal, record_hash(edited), TENANT, RECORDS,
    )  # fmt: skip
    assert (await broken_at(store))[:2] == (RECORDS, "unheaded")


async def test_two_swapped_records_are_named(store: Store) -> None:
    await unguard(store)
    await move(store, 3, -3)
    await move(store, 4, 3)
    await move(store, -3, 4)
    seq, kind, message = await broken_at(store)
    assert (seq, kind) == (3, "unlinked")
    assert "it does not follow record 2" in message


async def test_two_swapped_bodies_are_named(store: Store) -> None:
    three, four = await record(store, 3), await record(store, 4)
    await unguard(store)
    for seq, body in ((3, four.body_json), (4, three.body_json)):
        await sql(
            store, "UPDATE audit SET body = ? WHERE namespace = ? AND seq = ?", body, TENANT, seq
        )
    assert (await broken_at(store))[:2] == (3, "altered")


async def test_a_log_emptied_is_named(store: Store) -> None:
    await unguard(store)
    await sql(store, "DELETE FROM audit WHERE namespace = ?", TENANT)
    seq, kind, message = await broken_at(store)
    assert (seq, kind) == (1, "missing")
    assert "it is not there (the log has no record, its head is record 6)" in message


async def test_a_removed_head_is_named(store: Store) -> None:
    await sql(store, "DELETE FROM audit_heads WHERE namespace = ?", TENANT)
    assert (await broken_at(store))[:2] == (RECORDS, "unheaded")
