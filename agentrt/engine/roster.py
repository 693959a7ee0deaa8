"""The roster of workers serving a store: each serving worker writes a heartbeat, and
``agentrt workers`` lists the live ones with the runs they hold.

A heartbeat is a record in the store's resource table under a kind no spec can
name (``Worker``, namespace ``agentrt-system``), so every backend keeps it
without a table of its own; it is written every third of the lease TTL and
removed when the worker stops. A worker whose last heartbeat is older than a
lease TTL is gone (killed, cut off) and is not listed.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from agentrt.state.base import Store

__all__ = ["ROSTER_KIND", "ROSTER_NAMESPACE", "LiveWorker", "live_workers", "heartbeat"]

ROSTER_KIND: Final = "Worker"
ROSTER_NAMESPACE: Final = "agentrt-system"


@dataclass(frozen=True, slots=True)
class LiveWorker:
    """A worker that beat recently, and the runs whose leases it holds now."""

    id: str
    name: str
    host: str
    pid: int
    phase: str
    concurrency: int
    started_at: float
    heartbeat_at: float
    runs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``agentrt workers --json``)."""
        return {
            "id": self.id, "name": self.name, "host": self.host, "pid": self.pid,
            "phase": self.phase, "concurrency": self.concurrency,
            "started_at": self.started_at, "heartbeat_at": self.heartbeat_at,
            "runs": list(self.runs),
        }  # fmt: skip


def heartbeat(
    *, owner: str, name: str, phase: str, concurrency: int, started_at: float, now: float
) -> dict[str, Any]:
    """The body of one heartbeat."""
    pid = owner.split(":")[1] if owner.count(":") >= 2 else "0"
    return {
        "name": name,
        "host": socket.gethostname(),
        "pid": int(pid) if pid.isdigit() else 0,
        "phase": phase,
        "concurrency": concurrency,
        "started_at": started_at,
        "heartbeat_at": now,
    }


async def live_workers(store: Store, *, now: float, ttl_s: float) -> list[LiveWorker]:
    """The workers whose last heartbeat is at most ``ttl_s`` old, by name, each with
    the runs it holds a live lease on."""
    records = await store.list_resources(ROSTER_KIND, ROSTER_NAMESPACE)
    beating = [r for r in records if float(r.body.get("heartbeat_at", 0)) >= now - ttl_s]
    held: dict[str, list[str]] = defaultdict(list)
    if beating:
        for run in await store.list_runs(statuses=["running"], limit=10_000):
            if run.lease_owner and run.lease_expires is not None and run.lease_expires > now:
                held[run.lease_owner].append(run.id)
    workers = [
        LiveWorker(
            id=r.name,
            name=str(r.body.get("name") or r.name),
            host=str(r.body.get("host", "")),
            pid=int(r.body.get("pid", 0)),
            phase=str(r.body.get("phase", "")),
            concurrency=int(r.body.get("concurrency", 0)),
            started_at=float(r.body.get("started_at", 0)),
            heartbeat_at=float(r.body.get("heartbeat_at", 0)),
            runs=tuple(sorted(held.get(r.name, []))),
        )
        for r in beating
    ]
    return sorted(workers, key=lambda w: (w.name, w.id))
