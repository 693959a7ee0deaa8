"""Circuit breakers of model endpoints as the store keeps them: their records and the
rules by which a report moves one from state to state.

A circuit is one endpoint's (a Model and its ``base_url``, keyed
``NAMESPACE/MODEL@BASE_URL``), shared by every worker of the store:

- ``closed``: calls go to the endpoint; ``failures`` counts its failed calls in a
  row. The failure that makes them ``threshold`` opens it.
- ``open``: calls skip the endpoint until ``open_until``.
- ``half_open``: one probe call was let through, claimed by ``probe`` until
  ``probe_until``; every other call skips the endpoint meanwhile. The probe's
  success closes the circuit, its failure opens it again. A claim whose holder
  never reported (its process died) lapses at ``probe_until``, and the next call
  may claim the probe.

A store applies a :class:`CircuitReport` to a circuit with :func:`next_circuit`, in
one conditional write (a compare-and-set on ``version``), so reports from any
number of processes apply one after another, and of the calls that find a probe
due, exactly one claims it. What a call that started before the circuit opened
reports afterwards (a straggler's failure or success) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Circuit",
    "CircuitReport",
    "CircuitState",
    "CircuitStore",
    "circuit_key",
    "next_circuit",
]

CircuitState = Literal["closed", "open", "half_open"]


def circuit_key(namespace: str, model: str, base_url: str) -> str:
    """The circuit of ``namespace``'s Model ``model`` at ``base_url``."""
    return f"{namespace}/{model}@{base_url}"


@dataclass(frozen=True, slots=True)
class Circuit:
    """An endpoint's circuit as stored (a circuit never reported on is closed)."""

    key: str
    namespace: str
    state: CircuitState = "closed"
    failures: int = 0  # closed: failed calls in a row; open: those that opened it
    open_until: float = 0.0  # open: when a probe may be let through (Unix seconds)
    probe: str | None = None  # half_open: the probe call that holds the claim
    probe_until: float = 0.0  # half_open: when that claim lapses
    opened: int = 0  # how many times it opened
    version: int = 0  # each change adds one: the compare-and-set's token
    updated_at: float = 0.0

    def probe_due(self, now: float) -> bool:
        """Whether a call at ``now`` may claim the probe: it has been open long enough,
        or the last probe's claim lapsed."""
        if self.state == "open":
            return now >= self.open_until
        return self.state == "half_open" and now >= self.probe_until


@dataclass(frozen=True, slots=True)
class CircuitReport:
    """What a call tells its endpoint's circuit.

    ``failed``: the call failed (``threshold`` and ``open_s`` are its Model's
    policy); ``succeeded``: it answered; ``claim``: it asks to be the probe, held for
    ``hold_s``. ``probe`` is the probe call's id: the claimant's, or the probe's
    own when it reports its outcome (``None``: an ordinary call).
    """

    what: Literal["failed", "succeeded", "claim"]
    probe: str | None = None
    threshold: int = 5
    open_s: float = 30.0
    hold_s: float = 60.0


def next_circuit(circuit: Circuit, report: CircuitReport, now: float) -> Circuit:
    """The circuit after ``report`` at ``now``; ``circuit`` itself when nothing changes
    (a store writes nothing then)."""
    c, r = circuit, report
    mine = r.probe is not None and c.state == "half_open" and c.probe == r.probe
    if r.what == "claim":
        if r.probe is None or not c.probe_due(now):
            return c
        return _changed(c, now, state="half_open", probe=r.probe, probe_until=now + r.hold_s)
    if r.what == "succeeded":
        if mine or (c.state == "closed" and c.failures):
            return _changed(c, now, state="closed", failures=0, probe=None, probe_until=0.0)
        return c
    if mine:  # the probe failed: open again
        return _opened(c, now, r.open_s, c.failures)
    if c.state != "closed" or r.probe is not None:
        return c  # a straggler, or a probe whose claim another took since
    if c.failures + 1 >= r.threshold:
        return _opened(c, now, r.open_s, c.failures + 1)
    return _changed(c, now, failures=c.failures + 1)


def _opened(c: Circuit, now: float, open_s: float, failures: int) -> Circuit:
    return _changed(
        c, now, state="open", failures=failures, open_until=now + open_s, probe=None,
        probe_until=0.0, opened=c.opened + 1,
    )  # fmt: skip


def _changed(c: Circuit, now: float, **fields: object) -> Circuit:
    return replace(c, version=c.version + 1, updated_at=now, **fields)  # type: ignore[arg-type]


@runtime_checkable
class CircuitStore(Protocol):
    """The circuit breakers' part of the store contract."""

    async def report_circuit(
        self, key: str, namespace: str, report: CircuitReport, *, now: float
    ) -> Circuit:
        """Apply ``report`` to circuit ``key`` of ``namespace`` (a closed one when it was
        never reported on) by :func:`next_circuit`, in one atomic write; return the
        circuit as it is now. Nothing is written when the report changes nothing (a
        success of a circuit with no failure to forget, a straggler's report, a
        claim of a probe that is not due).

        Reports from any number of processes apply one after another: of the claims
        of one due probe, exactly one gets it (the circuit returned names its
        ``probe``), the others get the circuit it claimed.
        """
        ...

    async def get_circuit(self, key: str) -> Circuit | None:
        """The circuit, or ``None`` (never reported on: closed)."""
        ...

    async def list_circuits(self, namespace: str) -> list[Circuit]:
        """The circuits of ``namespace``, by key."""
        ...
