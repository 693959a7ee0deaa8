"""Listing runs over real HTTP: each filter, a user's own runs only, and pages that
give every run exactly once while runs are created in between."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.server.harness import Api, Served
from tests.server.run_fixtures import script, submitted, until, yaml


async def _ids(api: Api, query: str = "") -> list[str]:
    reply = await api.call("GET", f"/v1/runs{query}")
    assert reply.status == 200, reply
    return [r["id"] for r in reply.body["items"]]


async def test_runs_are_listed_by_every_filter_and_a_user_sees_its_own(
    served: Served, tenant: str, admin: Api, http: aiohttp.ClientSession
) -> None:
    served.model.set_rules(script())
    assert (await admin.apply(yaml(served.model.url))).status == 200
    alice = Api(served, await served.key(tenant, "user", name="alice"), http)
    bob = Api(served, await served.key(tenant, "user", name="bob"), http)
    viewer = Api(served, await served.key(tenant, "viewer", name="v"), http)
    a1 = await submitted(alice, "hello", target="echo", wait=True)
    b1 = await submitted(bob, "hello", target="echo", wait=True)
    a2 = await submitted(alice, "add them")
    await until(alice, a2, "waiting_approval")
    o1 = await submitted(admin, "hello", wait=True)
    runs = {r: (await admin.call("GET", f"/v1/runs/{r}")).body["run"] for r in (a1, b1, a2, o1)}
    middle = runs[b1]["created_at"]

    cases: list[tuple[Api, str, list[str]]] = [
        (admin, "", [o1, a2, b1, a1]),
        (viewer, "", [o1, a2, b1, a1]),
        (alice, "", [a2, a1]),
        (bob, "", [b1]),
        (admin, "?principal=key:alice", [a2, a1]),
        (viewer, "?principal=key:bob", [b1]),
        (alice, "?principal=key:alice", [a2, a1]),
        (admin, "?target=echo", [b1, a1]),
        (admin, "?target=bot&status=succeeded", [o1]),
        (admin, "?status=waiting_approval", [a2]),
        (admin, "?status=waiting_approval&status=succeeded&target=bot", [o1, a2]),
        (alice, "?status=succeeded", [a1]),
        (admin, f"?created_after={middle}", [o1, a2, b1]),
        (admin, f"?created_before={middle}", [a1]),
        (admin, f"?created_after={runs[a1]['created_at']}&created_before={middle}", [a1]),
        (admin, "?created_after=2999-01-01T00:00:00Z", []),
        (admin, "?created_before=2000-01-01T00:00:00%2B02:00", []),
        (admin, f"?parent={a1}", []),
    ]
    for api, query, expected in cases:
        assert await _ids(api, query) == expected, (api.key, query)

    refused = await alice.call("GET", "/v1/runs?principal=key:bob")
    assert refused.status == 403 and b1 not in refused.text
    for run_id in (b1, o1):
        other = await alice.call("GET", f"/v1/runs/{run_id}")
        assert other.status == 404 and run_id not in other.text, other
    naive = await admin.call("GET", "/v1/runs?created_after=2024-01-01T00:00:00")
    assert naive.status == 422, naive
    assert naive.body["error"]["issues"][0]["field"] == "query.created_after"
    assert "zone" in naive.body["error"]["message"]


async def test_pages_give_every_run_once_while_runs_are_created(served: Served, admin: Api) -> None:
    served.model.set_rules(script())
    assert (await admin.apply(yaml(served.model.url))).status == 200
    made = await asyncio.gather(*(submitted(admin, f"hi {i}", target="echo") for i in range(11)))
    listed = await admin.call("GET", "/v1/runs?limit=1000")
    order = [r["id"] for r in listed.body["items"]]
    assert sorted(order) == sorted(made)
    keys = [(r["created_at"], r["id"]) for r in listed.body["items"]]
    assert keys == sorted(keys, reverse=True), "newest first by (created_at, id)"

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        reply = await admin.call("GET", f"/v1/runs{query}")
        assert reply.status == 200, reply
        page: dict[str, Any] = reply.body
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Newer than every run listed: on no later page, and nothing moves.
        await submitted(admin, "meanwhile", target="echo")
    assert seen == order and pages == 4
    for bad in ("nonsense", "W10", "WyJ4IiwgMV0"):
        reply = await admin.call("GET", f"/v1/runs?cursor={bad}")
        assert reply.status == 400 and "cursor" in reply.body["error"]["message"], (bad, reply)
