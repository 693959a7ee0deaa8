"""Who holds a run's lease, and whether anyone alive does.

A lease names its holder (``host:pid:nonce``); a holder on this host whose
process is gone is known dead at once, without waiting for its lease to run out
(see :mod:`agentrt._owner`).
"""

from __future__ import annotations

from agentrt._owner import owner_is_dead
from agentrt.state.base import WAITING_STATUSES, RunRecord

__all__ = ["dead_holder", "orphaned"]


def dead_holder(run: RunRecord) -> str | None:
    """The run's lease holder when it is a process known to be gone, else ``None``.

    Passed as ``replacing`` to :meth:`Store.acquire_lease`: the takeover then
    succeeds only if that same holder still has the lease.
    """
    holder = run.lease_owner
    return holder if holder is not None and owner_is_dead(holder) else None


def orphaned(run: RunRecord, now: float) -> bool:
    """Unfinished, not waiting for a person, and nobody alive executes it."""
    if run.finished or run.status in WAITING_STATUSES:
        return False
    if run.lease_owner is None or run.lease_expires is None or run.lease_expires <= now:
        return True
    return dead_holder(run) is not None
