"""``GET /v1/audit`` and ``GET /v1/audit/verify`` on a real ``agentrt serve``, over HTTP:
an operator's key reads and verifies its own tenant's log (filtered, a page at a
time), a user's key is refused, no key sees another tenant's; and a key made or
revoked is in its tenant's log, never its secret."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from typing import Any

import aiohttp

from agentrt.server.keys import SYSTEM_NAMESPACE, create_key, revoke_key
from agentrt.state import Store
from agentrt.state.audit import verify_audit
from tests.server.harness import Api, Served
from tests.server.run_fixtures import script, submitted, until, yaml


async def _all(api: Api, query: str) -> list[dict[str, Any]]:
    """Every record a listing gives, following its cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/v1/audit?{query}" + (f"&cursor={cursor}" if cursor else "")
        reply = await api.call("GET", path)
        assert reply.status == 200, reply
        items += reply.body["items"]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return items


async def test_an_operator_lists_its_tenants_audit_log_a_page_at_a_time(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(script())
    admin = Api(served, await served.key(tenant, "admin", name="boss"), http)
    op = Api(served, await served.key(tenant, "operator", name="ops"), http)
    user = Api(served, await served.key(tenant, "user", name="ann"), http)
    stranger = Api(served, await served.key(f"{tenant}-x", "admin", name="x"), http)
    assert (await admin.apply(yaml(served.model.url))).status == 200
    assert (await stranger.apply(yaml(served.model.url))).status == 200
    run_id = await submitted(user, "hello")
    await until(user, run_id, "succeeded")

    everything = await _all(op, "limit=2")
    seqs = [r["seq"] for r in everything]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)  # newest first
    assert seqs[-1] == 1 and {r["namespace"] for r in everything} == {tenant}
    kinds = [r["kind"] for r in reversed(everything)]
    assert kinds[:3] == ["key.created"] * 3  # boss, ops, ann
    assert kinds.count("resource.applied") == 5 and "run.submitted" in kinds

    by_ann = await _all(op, "principal=key:ann")
    assert by_ann and {r["principal"] for r in by_ann} == {"key:ann"}
    of_run = await _all(op, f"run={run_id}&kind=run.submitted")
    assert [(r["kind"], r["run_id"]) for r in of_run] == [("run.submitted", run_id)]
    applied = await _all(op, "kind=resource.applied&kind=resource.deleted&agent=echo")
    assert [(r["kind"], r["agent"]) for r in applied] == [("resource.applied", "echo")]
    future = await _all(op, f"since={time.time() + 3600}")
    assert future == []
    assert await _all(op, "until=2000-01-01T00:00:00Z") == []

    # Another tenant's key sees only its own log; a user's key none at all.
    theirs = await _all(stranger, "limit=1000")
    assert {r["namespace"] for r in theirs} == {f"{tenant}-x"}
    assert not {r["hash"] for r in theirs} & {r["hash"] for r in everything}
    refused = await user.call("GET", "/v1/audit")
    assert refused.status == 403, refused
    assert (await user.call("GET", "/v1/audit/verify")).status == 403
    assert (await Api(served, None, http).call("GET", "/v1/audit")).status == 401
    bad = await op.call("GET", "/v1/audit?cursor=nonsense")
    assert bad.status == 400, bad


async def test_verify_over_http_checks_the_tenants_chain(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    op = Api(served, await served.key(tenant, "operator", name="ops"), http)
    assert (await op.apply(yaml(served.model.url))).status == 200
    reply = await op.call("GET", "/v1/audit/verify")
    assert reply.status == 200, reply
    verdict = reply.body
    listed = await _all(op, "limit=1000")
    assert verdict["ok"] is True and verdict["namespace"] == tenant
    assert verdict["records"] == len(listed) == 6  # the key made, five resources applied
    assert verdict["head"] == listed[0]["hash"] and verdict["broken"] is None
    assert "intact" in verdict["message"]
    # A broken chain is named: change a stored record behind the store's back.
    path = served.store_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute(
            "UPDATE audit SET principal = 'key:forged' WHERE namespace = ? AND seq = 3", (tenant,)
        )
    broken = (await op.call("GET", "/v1/audit/verify")).body
    assert broken["ok"] is False and broken["broken"]["seq"] == 3, broken


async def test_a_key_made_and_revoked_is_in_its_tenants_log_without_its_secret(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    text = await served.key(tenant, "user", name="temp")
    admin = Api(served, await served.key(tenant, "admin", name="boss"), http)
    key_id = text.split("_")[1]
    async with Store.from_url(served.store_url) as store:
        await revoke_key(store, key_id, now=time.time(), by="alice")
        await revoke_key(store, key_id, now=time.time(), by="alice")  # recorded once
    records = await _all(admin, "kind=key.created&kind=key.revoked")
    made = [r for r in records if r["body"]["id"] == key_id]
    assert [(r["kind"], r["principal"]) for r in made] == [
        ("key.revoked", "alice"),
        ("key.created", None),
    ]
    assert made[1]["body"] == {"id": key_id, "name": "temp", "role": "user", "generation": 1}
    assert made[0]["body"]["generation"] == 2
    secret = text.split("_", 2)[2]
    for record in made:
        assert secret not in str(record) and "sha256" not in record["body"]
    assert (await Api(served, text, http).call("GET", "/v1/runs")).status == 401


async def test_a_keys_records_go_to_its_tenants_chain_on_both_stores(any_store: Store) -> None:
    key, _ = await create_key(any_store, tenant="acme", role="operator", name="ops", now=1.0)
    await revoke_key(any_store, key.id, now=2.0, by="alice")
    records = await any_store.list_audit("acme")
    assert [(r.kind, r.principal, r.body["id"]) for r in records] == [
        ("key.created", None, key.id),
        ("key.revoked", "alice", key.id),
    ]
    assert await any_store.list_audit(SYSTEM_NAMESPACE) == []  # not the keys' namespace
    assert (await verify_audit(any_store, "acme")).ok
