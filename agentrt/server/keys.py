"""API keys: made once and shown once, stored only as a hash, each bound to a tenant
and a role.

A key reads ``agrt_<id>_<secret>``. The id names the key in lists and events;
the secret is 32 random bytes, so a plain SHA-256 of it is as strong as a slow
password hash would be (there is nothing to guess), and checking a key costs
one store read. Keys live in the store as resources of kind ``ApiKey`` in the
reserved namespace ``agentrt-system``, which no tenant can name, so every
replica of the server over one store knows every key, and a revoked key is
refused by all of them at its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, get_args

from agentrt.errors import NotFoundError, UsageError
from agentrt.state.audit import AuditDraft
from agentrt.state.base import Store

__all__ = [
    "KEY_KIND",
    "ROLES",
    "SYSTEM_NAMESPACE",
    "ApiKey",
    "Principal",
    "Role",
    "create_key",
    "list_keys",
    "revoke_key",
    "verify_key",
]

Role = Literal["viewer", "user", "operator", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)  # each role may do what those before it may
KEY_KIND: Final = "ApiKey"
SYSTEM_NAMESPACE: Final = "agentrt-system"
_PREFIX: Final = "agrt"
_KEY: Final = re.compile(r"^agrt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_TENANT: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What is known of a key once made: never its secret."""

    id: str
    name: str
    tenant: str
    role: Role
    created_at: float
    revoked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The key as JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a key's id and name, its tenant and its role."""

    key_id: str
    name: str
    tenant: str
    role: Role

    def may(self, role: Role) -> bool:
        """Whether this principal's role includes ``role``'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def label(self) -> str:
        """How events record this principal: ``key:NAME``."""
        return f"key:{self.name}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(body: dict[str, Any]) -> ApiKey:
    spec = body["spec"]
    return ApiKey(
        id=body["metadata"]["name"],
        name=spec["name"],
        tenant=spec["tenant"],
        role=spec["role"],
        created_at=spec["created_at"],
        revoked_at=spec.get("revoked_at"),
    )


def check_tenant(tenant: str) -> None:
    """Refuse a tenant name a namespace cannot have, or the reserved one."""
    if tenant == SYSTEM_NAMESPACE or not _TENANT.match(tenant):
        raise UsageError(
            f"tenant {tenant!r}: give a namespace name (lower-case letters, digits and '-', "
            f"at most 63), not {SYSTEM_NAMESPACE!r}"
        )


async def create_key(
    store: Store, *, tenant: str, role: str, name: str | None, now: float, by: str | None = None
) -> tuple[ApiKey, str]:
    """Make a key for ``tenant`` with ``role``; returns it and its secret text, which
    is shown this once and never stored. The tenant's audit log records ``key.created``
    (by ``by``) in the same write: the key's id, name and role, never its secret."""
    check_tenant(tenant)
    if role not in ROLES:
        raise UsageError(f"role {role!r}: use one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    spec = {
        "name": name or key_id,
        "tenant": tenant,
        "role": role,
        "created_at": now,
        "sha256": _digest(secret),
    }
    body = {"kind": KEY_KIND, "metadata": {"name": key_id, "namespace": SYSTEM_NAMESPACE}}
    key = _record({**body, "spec": spec})
    audit = _audit("key.created", key, by)
    await store.put_resource(
        KEY_KIND, SYSTEM_NAMESPACE, key_id, {**body, "spec": spec}, now=now, audit=audit
    )
    return key, f"{_PREFIX}_{key_id}_{secret}"


def _audit(kind: str, key: ApiKey, by: str | None) -> AuditDraft:
    """The tenant's record of a change of ``key``: what names it, never its secret."""
    body = {"id": key.id, "name": key.name, "role": key.role}
    return AuditDraft(kind, by, body, ref=f"{kind}:{key.id}", namespace=key.tenant)


async def list_keys(store: Store, *, tenant: str | None = None) -> list[ApiKey]:
    """The keys made (revoked ones too), of one tenant or all, oldest first."""
    records = await store.list_resources(KEY_KIND, SYSTEM_NAMESPACE)
    keys = [_record(r.body) for r in records]
    keys = [k for k in keys if tenant is None or k.tenant == tenant]
    return sorted(keys, key=lambda k: (k.created_at, k.id))


async def revoke_key(store: Store, key_id: str, *, now: float, by: str | None = None) -> ApiKey:
    """Revoke a key: every later request with it is refused. Revoking twice is harmless
    (and recorded once: ``key.revoked`` in its tenant's audit log, by ``by``)."""
    record = await store.get_resource(KEY_KIND, SYSTEM_NAMESPACE, key_id)
    if record is None:
        raise NotFoundError(f"no API key {key_id!r} (list them with `agentrt keys list`)")
    body = record.body
    if body["spec"].get("revoked_at") is None:
        body = {**body, "spec": {**body["spec"], "revoked_at": now}}
        audit = _audit("key.revoked", _record(body), by)
        await store.put_resource(KEY_KIND, SYSTEM_NAMESPACE, key_id, body, now=now, audit=audit)
    return _record(body)


async def verify_key(store: Store, text: str) -> Principal | None:
    """The principal of a key's text, or ``None`` if it is malformed, unknown or revoked."""
    found = _KEY.match(text)
    if found is None:
        return None
    key_id, secret = found.groups()
    record = await store.get_resource(KEY_KIND, SYSTEM_NAMESPACE, key_id)
    if record is None:
        return None
    spec = record.body["spec"]
    if (
        not hmac.compare_digest(spec["sha256"], _digest(secret))
        or spec.get("revoked_at") is not None
    ):
        return None
    return Principal(key_id=key_id, name=spec["name"], tenant=spec["tenant"], role=spec["role"])
