"""The fencing rule every backend applies to a write made under a lease.

A write given ``owner`` is refused unless ``owner`` holds the run's lease; given
``token`` too, unless the lease still carries that fencing token (see
:mod:`agentrt.state.base`). Backends read the run's holder and token in the
write's own transaction and ask :func:`check_fence`; the wording of the refusal
is the same everywhere.
"""

from __future__ import annotations

from agentrt.errors import LeaseLost, UsageError

__all__ = ["check_fence", "check_token_has_owner", "granted_token"]


def check_token_has_owner(owner: str | None, token: int | None) -> None:
    """Refuse a ``token`` given without the ``owner`` it belongs to.

    Raises:
        UsageError: ``token`` is given and ``owner`` is not.
    """
    if token is not None and owner is None:
        raise UsageError("a fencing token is checked with its owner: pass owner= too")


def check_fence(
    run_id: str,
    holder: str | None,
    holder_token: int,
    owner: str | None,
    token: int | None,
) -> None:
    """Refuse a write by ``owner`` (under ``token``) to a run held by ``holder``
    under ``holder_token``; no ``owner`` is no lease check.

    Raises:
        LeaseLost: ``owner`` does not hold the lease, or holds it under another grant.
    """
    if owner is None:
        return
    if holder != owner:
        shown = "nobody" if holder is None else repr(holder)
        raise LeaseLost(f"run {run_id!r} is leased to {shown}, not {owner!r}")
    if token is not None and holder_token != token:
        raise LeaseLost(
            f"run {run_id!r} was leased again since {owner!r} got fencing token {token} "
            f"(it is at {holder_token}): a newer grant owns it"
        )


def granted_token(
    holder: str | None,
    holder_expires: float | None,
    holder_token: int,
    owner: str,
    now: float,
) -> int:
    """The token a lease granted to ``owner`` at ``now`` carries: the same while
    ``owner`` holds it live (acquiring again), else the next one."""
    live = holder_expires is not None and holder_expires > now
    if holder == owner and live:
        return holder_token
    return holder_token + 1
