"""The spec of a ``Tenant`` resource: a tenant's share of the fleet, set by the
platform's operator.

Tenants are kept in the reserved namespace ``agentrt-system`` (which no API key can
name, so no tenant sets its own share), one named after each tenant: ``agentrt
apply -n agentrt-system -f tenants.yaml``. A tenant without one has weight 1 and
no limit of its own.
"""

from __future__ import annotations

from pydantic import Field

from agentrt.spec._base import Strict

__all__ = ["TENANTS_NAMESPACE", "TenantSpec"]

TENANTS_NAMESPACE = "agentrt-system"
"""Where ``Tenant`` resources are kept."""


class TenantSpec(Strict):
    """A tenant's weight in the fair share of workers' slots between tenants that all
    have runs waiting, and how many of its runs may run at once on the whole fleet."""

    weight: float = Field(default=1.0, gt=0, description="its share against others' weights")
    max_running: int | None = Field(
        default=None, ge=1, description="its runs running at once, fleet-wide"
    )
