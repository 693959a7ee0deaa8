"""``/v1/resources``: apply, list, get and delete a tenant's resources.

Apply takes one or more documents, as YAML (``application/yaml``, several
separated by ``---``) or JSON (one object or a list). A document without a
``metadata.namespace`` goes to the caller's tenant; one naming another is
refused. Errors are the CLI's, without a file: each issue names the document,
the resource, the field and the fix (422). Reads return the stored document
with its ``generation`` as the ``ETag``; a delete with ``If-Match`` deletes
only that generation (412 otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from agentrt import _json
from agentrt.errors import SpecError, SpecIssue
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.spec import KINDS
from agentrt.spec._yaml import parse_documents
from agentrt.spec.host_access import host_access
from agentrt.spec.loader import Loaded, field_path, parse_resource
from agentrt.state.records import ResourceRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1/resources", tags=["resources"])

_DOCUMENTS = "request"
_APPLY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string", "minLength": 1}},
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object"},
                        {"type": "array", "items": {"type": "object"}},
                    ]
                }
            },
        },
    }
}


def _record_dict(record: ResourceRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "namespace": record.namespace,
        "name": record.name,
        "generation": record.generation,
        "resource": record.body,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _documents(raw: bytes, content_type: str) -> str:
    """The request's documents as YAML text (JSON is YAML)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    if "json" in content_type:
        try:
            data = _json.loads(text)
        except ValueError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        docs = data if isinstance(data, list) else [data]
        return "\n---\n".join(_json.dumps_str(d) for d in docs) or "null"
    return text


def _in_tenant(loaded: list[Any], principal: Principal) -> list[SpecIssue]:
    """Each document's namespace set to the caller's tenant; issues for any other."""
    issues = []
    for doc in loaded:
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        if not isinstance(meta, dict):
            continue
        namespace = meta.setdefault("namespace", principal.tenant)
        if namespace != principal.tenant:
            issues.append(
                SpecIssue(
                    f"document {doc.number}", f"document {doc.number}", "metadata.namespace",
                    f"namespace {namespace!r} is not this key's tenant",
                    f"leave it out or set it to {principal.tenant!r}",
                )
            )  # fmt: skip
    return issues


def _host_issues(item: Loaded, request: Request) -> list[SpecIssue]:
    trust = server_context(request).trust
    res = item.resource
    return [
        SpecIssue(
            item.file, f"{res.kind}/{res.name}", field_path(access.field),
            f"{access.kind} {access.value!r} is on the server's host, which API clients "
            "may not reach",
            f"ask the operator to allow it (agentrt serve --allow-{access.kind} ...), or "
            "use a kind that needs no host access (code, http, a remote MCP url)",
        )
        for access in host_access(res)
        if not trust.allows(access.kind, access.value)
    ]  # fmt: skip


@router.post("", openapi_extra=_APPLY_BODY, summary="Apply resources")
async def apply(
    request: Request, principal: Annotated[Principal, Depends(require("operator"))]
) -> dict[str, Any]:
    """Validate and store the documents of the body in the caller's tenant."""
    text = _documents(await request.body(), request.headers.get("content-type", ""))
    docs = parse_documents(text, _DOCUMENTS)
    if all(doc.data is None for doc in docs):
        raise ApiError(400, "the body holds no resources: send YAML or JSON documents")
    issues = _in_tenant(docs, principal)
    loaded: list[Loaded] = []
    for doc in docs:
        try:
            where = f"document {doc.number}"
            resource = parse_resource(doc.data, file=where, document=doc.number)
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        loaded.append(Loaded(resource, where, None))
    for item in loaded:
        issues.extend(_host_issues(item, request))
    if issues:
        raise SpecError(issues)
    records = await server_context(request).runtime.apply(loaded, by=principal.label)
    return {"applied": [_record_dict(r) for r in records]}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ApiError(404, f"no resource kind {kind!r}; kinds: {', '.join(KINDS)}")
    return kind


@router.get("", summary="List resources")
async def list_resources(
    request: Request, principal: Caller, kind: str | None = None
) -> dict[str, Any]:
    """The tenant's resources, of one kind or all, by kind and name."""
    store = server_context(request).runtime.store
    records = await store.list_resources(_kind(kind) if kind else None, principal.tenant)
    return {"items": [_record_dict(r) for r in records if r.kind in KINDS]}


async def _get(request: Request, principal: Principal, kind: str, name: str) -> ResourceRecord:
    store = server_context(request).runtime.store
    record = await store.get_resource(_kind(kind), principal.tenant, name)
    if record is None:
        raise ApiError(404, f"no {kind} of that name in the key's tenant")
    return record


@router.get("/{kind}/{name}", summary="Get a resource")
async def get_resource(
    request: Request, response: Response, principal: Caller, kind: str, name: str
) -> dict[str, Any]:
    """One stored resource; its ``generation`` is the ``ETag``."""
    record = await _get(request, principal, kind, name)
    response.headers["ETag"] = f'"{record.generation}"'
    return _record_dict(record)


@router.delete("/{kind}/{name}", summary="Delete a resource")
async def delete_resource(
    request: Request,
    principal: Annotated[Principal, Depends(require("operator"))],
    kind: str,
    name: str,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Delete a resource; with ``If-Match``, only the generation it names."""
    record = await _get(request, principal, kind, name)
    if if_match is not None and if_match.strip('"') != str(record.generation):
        raise ApiError(412, f"{kind} {name!r} is at generation {record.generation}, not {if_match}")
    runtime = server_context(request).runtime
    await runtime.delete_resource(kind, name, namespace=principal.tenant, by=principal.label)
    return {"deleted": {"kind": kind, "namespace": principal.tenant, "name": name}}
