"""What a real ``agentrt serve`` records in the audit log, over HTTP: each key's principal
as who applied and deleted resources, started a run, and approved or denied its calls;
the run's calls as done for whoever started it; each tenant in its own chain."""

from __future__ import annotations

import aiohttp

from agentrt.state import Store
from agentrt.state.audit import AuditRecord, verify_audit
from tests.server.harness import Api, Served
from tests.server.run_fixtures import script, submitted, until, yaml


async def _log(served: Served, tenant: str) -> list[AuditRecord]:
    async with Store.from_url(served.store_url, read_only=True) as store:
        verdict = await verify_audit(store, tenant)
        assert verdict.ok, verdict.message()
        return await store.list_audit(tenant, limit=1000)


async def test_the_server_records_who_did_what(
    served: Served, tenant: str, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(script())
    admin = Api(served, await served.key(tenant, "admin", name="boss"), http)
    user = Api(served, await served.key(tenant, "user", name="ann"), http)
    op = Api(served, await served.key(tenant, "operator", name="ops"), http)
    stranger = Api(served, await served.key(f"{tenant}-x", "admin", name="x"), http)
    assert (await admin.apply(yaml(served.model.url))).status == 200
    assert (await stranger.apply(yaml(served.model.url))).status == 200

    approved = await submitted(user, "add them")
    await until(user, approved, "waiting_approval")
    reply = await op.call("POST", f"/v1/runs/{approved}/approve", json={"step": 2, "wait": True})
    assert reply.status == 200, reply
    denied = await submitted(user, "add again")
    await until(user, denied, "waiting_approval")
    reply = await op.call("POST", f"/v1/runs/{denied}/deny", json={"step": 2, "reason": "no"})
    assert reply.status == 202, reply
    await until(op, denied, "succeeded")
    assert (await admin.call("DELETE", "/v1/resources/Agent/echo")).status == 200

    records = await _log(served, tenant)
    made = [r.body["name"] for r in records if r.kind == "key.created"]
    assert made == ["boss", "ann", "ops"]  # each key made is in its tenant's log
    applied = [r for r in records if r.kind == "resource.applied"]
    assert {r.principal for r in applied} == {"key:boss"} and len(applied) == 5
    for run_id, decision in ((approved, "tool.approved"), (denied, "tool.denied")):
        log = [(r.kind, r.principal) for r in records if r.run_id == run_id]
        assert log[:2] == [("run.submitted", "key:ann"), (decision, "key:ops")]
        calls = [who for kind, who in log if kind == "tool.call"]
        assert calls == (["key:ann"] if decision == "tool.approved" else [])
    (gone,) = [r for r in records if r.kind == "resource.deleted"]
    assert (gone.principal, gone.agent, gone.body) == (
        "key:boss", "echo", {"kind": "Agent", "name": "echo"},
    )  # fmt: skip
    assert records[-1] == gone
    other = await _log(served, f"{tenant}-x")
    assert [(r.kind, r.principal) for r in other] == [("key.created", None)] + [
        ("resource.applied", "key:x")
    ] * 5
