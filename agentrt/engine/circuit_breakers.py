"""The circuit breakers of model endpoints as one process's model steps see them.

The store keeps each endpoint's circuit for the whole fleet
(:mod:`agentrt.state.circuits`). A process reads one at most once every ``ttl_s``
and decides from what it read in between, so a call of a healthy endpoint costs
no store call at all; it writes only when something happens: a call failed, a
success forgets failures counted before it, a probe is claimed, or a probe ends.

What that costs in freshness: a circuit another process opened is seen here
within ``ttl_s`` (a few more calls may reach the failing endpoint meanwhile), and
a success here forgets only the failures this process read or counted (others'
counted since its last read are forgotten by its next success after it reads
them). The probe is exact: it is claimed by a conditional write of the store, so
one call of the fleet probes, whatever each process read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agentrt.engine.context_values import fresh_id
from agentrt.engine.recent_reads import RecentReads
from agentrt.spec.model_spec import CircuitPolicy
from agentrt.state.base import Store
from agentrt.state.circuits import Circuit, CircuitReport

__all__ = ["Admission", "Circuits"]


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a call may go to its endpoint: ``call`` (closed), ``probe`` (this call
    claimed the probe of an open circuit: its ``probe`` id reports its outcome), or
    ``skip`` (open, or another call probes it)."""

    verdict: Literal["call", "probe", "skip"]
    circuit: Circuit
    probe: str | None = None


class Circuits:
    """The circuits of this process's model endpoints, read through a short cache."""

    def __init__(self, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        """Read a circuit from the store again once ``ttl_s`` passed on ``clock``."""
        self._seen = RecentReads[str, Circuit](ttl_s=ttl_s, clock=clock)

    async def admit(
        self, store: Store, key: str, namespace: str, *, now: float, hold_s: float
    ) -> Admission:
        """Whether a call at ``now`` (Unix seconds) goes to endpoint ``key``; a probe it
        claims is held for ``hold_s`` (the longest the call may take)."""
        circuit = await self._read(store, key, namespace)
        if circuit.state == "closed":
            return Admission("call", circuit)
        if not circuit.probe_due(now):
            return Admission("skip", circuit)
        probe = fresh_id()
        claim = CircuitReport("claim", probe=probe, hold_s=hold_s)
        circuit = await self._report(store, key, namespace, claim, now)
        if circuit.state == "half_open" and circuit.probe == probe:
            return Admission("probe", circuit, probe)
        return Admission("skip", circuit)

    async def failed(
        self,
        store: Store,
        key: str,
        namespace: str,
        policy: CircuitPolicy,
        *,
        probe: str | None,
        now: float,
    ) -> Circuit:
        """Count a failed call (``probe``: the probe's own); the circuit after it."""
        report = CircuitReport(
            "failed", probe=probe, threshold=policy.failures, open_s=policy.open_s
        )
        return await self._report(store, key, namespace, report, now)

    async def succeeded(
        self, store: Store, key: str, namespace: str, *, probe: str | None, now: float
    ) -> Circuit:
        """A call answered (``probe``: the probe's own, which closes the circuit); no
        write when there is nothing to forget, as far as this process knows."""
        circuit = self._seen.peek(key)
        quiet = circuit is not None and (circuit.state != "closed" or not circuit.failures)
        if probe is None and circuit is not None and quiet:
            return circuit  # nothing to forget, or a straggler of an open circuit
        report = CircuitReport("succeeded", probe=probe)
        return await self._report(store, key, namespace, report, now)

    async def _read(self, store: Store, key: str, namespace: str) -> Circuit:
        async def read() -> Circuit:
            return await store.get_circuit(key) or Circuit(key, namespace)

        return await self._seen.get(key, read)

    async def _report(
        self, store: Store, key: str, namespace: str, report: CircuitReport, now: float
    ) -> Circuit:
        circuit = await store.report_circuit(key, namespace, report, now=now)
        self._seen.put(key, circuit)
        return circuit
