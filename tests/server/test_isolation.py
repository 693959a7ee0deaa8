"""Tenant isolation and roles, tried on every endpoint of the OpenAPI document (so a
new endpoint cannot be missed): a key of another tenant, or of a role below the
endpoint's, is refused everywhere, and no answer shows the other tenant's ids or data."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from agentrt.server.keys import ROLES
from tests.conftest import rules
from tests.server.harness import Api, Reply, Served

PUBLIC = {"/healthz", "/readyz"}  # answer anyone, and say nothing of a tenant


async def _document(api: Api) -> dict[str, Any]:
    reply = await api.call("GET", "/v1/openapi.json")
    assert reply.status == 200
    return reply.body  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if path not in PUBLIC and path != "/v1/openapi.json"
    ]


def _example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value the schema accepts, with every required field filled in."""
    if "$ref" in schema:
        return _example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _example(schema[key][0], components)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: _example(props[k], components) for k in schema.get("required", [])}
    return {"string": "x", "integer": 1, "number": 1, "boolean": False, "array": []}.get(
        str(kind), {}
    )


def _body(op: dict[str, Any], components: dict[str, Any]) -> tuple[Any, str | None]:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        return _example(content["application/json"].get("schema", {}), components), None
    if "application/yaml" in content:
        return None, "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: x}\n"
    return None, None


class _Victim:
    """Tenant A, with an agent, a finished run in a session, and words no one else has."""

    def __init__(self, tenant: str) -> None:
        word = secrets.token_hex(4)
        self.tenant = tenant
        self.agent = f"agent-{word}"
        self.session = f"session-{word}"
        self.output = f"secret-{word}"
        self.run_id = ""

    def params(self) -> dict[str, str]:
        return {
            "run_id": self.run_id, "session_id": self.session, "kind": "Agent",
            "name": self.agent, "step": "1",
        }  # fmt: skip

    def secrets(self) -> list[str]:
        return [self.tenant, self.agent, self.session, self.output, self.run_id]


async def _victim(served: Served, admin: Api, tenant: str) -> _Victim:
    victim = _Victim(tenant)
    served.model.set_rules(rules({"content": victim.output}))
    text = (
        "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\n"
        f"spec: {{provider: openai, base_url: '{served.model.url}', max_retries: 0}}\n---\n"
        f"apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {{name: {victim.agent}}}\n"
        "spec: {model: m, instructions: be brief}\n"
    )
    assert (await admin.apply(text)).status == 200
    query = {"target": victim.agent, "input": "hi", "session": victim.session, "wait": True}
    reply = await admin.call("POST", "/v1/queries", json=query)
    assert reply.status == 200, reply
    victim.run_id = reply.body["run"]["id"]
    return victim


async def _try(api: Api, method: str, path: str, op: dict[str, Any], doc: dict[str, Any],
               params: dict[str, str]) -> Reply:  # fmt: skip
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    path = path.replace("{", "").replace("}", "")  # a parameter no victim has: any text
    data, text = _body(op, doc.get("components", {}).get("schemas", {}))
    headers = {"Content-Type": "application/yaml"} if text is not None else None
    return await api.call(method, path, json=data, data=text, headers=headers)


async def test_every_endpoint_says_which_role_it_needs(admin: Api) -> None:
    document = await _document(admin)
    missing = [(m, p) for m, p, op in _operations(document) if "x-agentrt-role" not in op]
    assert not missing, f"endpoints that take no key or name no role: {missing}"


async def test_no_endpoint_shows_another_tenant_anything(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    victim = await _victim(served, admin, tenant)
    document = await _document(admin)
    other = Api(served, await served.key(f"o-{secrets.token_hex(3)}", "admin"), http)
    for method, path, op in _operations(document):
        reply = await _try(other, method, path, op, document, victim.params())
        where = f"{method} {path}: {reply.status} {reply.text[:300]}"
        assert reply.status < 500, where
        if "{" in path:  # aimed at one of the victim's things: refused
            assert reply.status in (403, 404, 405, 409, 422), where
        for secret in victim.secrets():
            assert secret not in reply.text, f"{where} shows {secret!r}"
    # And nothing of the victim's changed.
    run = await admin.call("GET", f"/v1/runs/{victim.run_id}")
    assert run.status == 200 and run.body["run"]["status"] == "succeeded"
    assert (await admin.call("GET", f"/v1/resources/Agent/{victim.agent}")).status == 200


async def test_a_role_below_an_endpoints_is_refused(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    victim = await _victim(served, admin, tenant)
    document = await _document(admin)
    keys = {role: Api(served, await served.key(tenant, role), http) for role in ROLES}
    for method, path, op in _operations(document):
        needed = ROLES.index(op["x-agentrt-role"])
        for role in ROLES[:needed]:
            reply = await _try(keys[role], method, path, op, document, victim.params())
            assert reply.status in (403, 404), f"{role} {method} {path}: {reply.status}"


async def test_no_endpoint_shows_a_user_another_users_runs_or_sessions(
    served: Served, admin: Api, tenant: str, http: aiohttp.ClientSession
) -> None:
    """A ``user`` key tries every endpoint on a run and session another user key of its
    own tenant started: each is refused, and no answer shows them."""
    ann = Api(served, await served.key(tenant, "user", name="ann"), http)
    victim = await _victim(served, admin, tenant)
    query = {"target": victim.agent, "input": "hi", "session": victim.session, "wait": True}
    victim.session = f"own-{victim.session}"  # ann's, not the admin's
    reply = await ann.call("POST", "/v1/queries", json={**query, "session": victim.session})
    assert reply.status == 200, reply
    victim.run_id = reply.body["run"]["id"]
    document = await _document(admin)
    bob = Api(served, await served.key(tenant, "user", name="bob"), http)
    for method, path, op in _operations(document):
        reply = await _try(bob, method, path, op, document, victim.params())
        where = f"{method} {path}: {reply.status} {reply.text[:300]}"
        assert reply.status < 500, where
        if "{run_id}" in path or "{session_id}" in path:
            assert reply.status in (403, 404, 405, 409, 422), where
        for secret in (victim.run_id, victim.session, victim.output):
            assert secret not in reply.text, f"{where} shows {secret!r}"
    run = await ann.call("GET", f"/v1/runs/{victim.run_id}")
    assert run.status == 200 and run.body["run"]["status"] == "succeeded"
