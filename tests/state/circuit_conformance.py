"""The circuit breaker part of the store conformance suite (listed in
``conformance.CHECKS``): a circuit opens at its threshold, lets one probe through
once open long enough, closes on the probe's success and opens again on its
failure; reports racing from two stores on one database count every failure once
and let exactly one claim of a due probe win."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentrt.state.circuits import Circuit, CircuitReport, circuit_key

if TYPE_CHECKING:
    from tests.state.conformance import Harness

__all__ = ["CIRCUIT_CHECKS"]

KEY = circuit_key("a", "primary", "http://127.0.0.1:9/v1")
FAILED = CircuitReport("failed", threshold=3, open_s=30.0)


def _claim(probe: str, hold_s: float = 10.0) -> CircuitReport:
    return CircuitReport("claim", probe=probe, hold_s=hold_s)


async def check_circuit_opens_at_its_threshold(h: Harness) -> None:
    """Failures count in a row, a success forgets them, the one that reaches the
    threshold opens the circuit; what a straggler reports while it is open changes
    nothing; a success with nothing to forget writes nothing."""
    s = h.store
    assert await s.get_circuit(KEY) is None
    untouched = await s.report_circuit(KEY, "a", CircuitReport("succeeded"), now=1.0)
    assert untouched == Circuit(KEY, "a") and await s.get_circuit(KEY) is None
    assert (await s.report_circuit(KEY, "a", FAILED, now=2.0)).failures == 1
    two = await s.report_circuit(KEY, "a", FAILED, now=3.0)
    assert (two.state, two.failures) == ("closed", 2)
    reset = await s.report_circuit(KEY, "a", CircuitReport("succeeded"), now=4.0)
    assert (reset.state, reset.failures, reset.version) == ("closed", 0, 3)
    for now in (5.0, 6.0):
        await s.report_circuit(KEY, "a", FAILED, now=now)
    opened = await s.report_circuit(KEY, "a", FAILED, now=7.0)
    assert (opened.state, opened.failures, opened.opened) == ("open", 3, 1)
    assert opened.open_until == 37.0 and await s.get_circuit(KEY) == opened
    # A call that started before it opened reports late: nothing changes.
    assert await s.report_circuit(KEY, "a", FAILED, now=8.0) == opened
    assert await s.report_circuit(KEY, "a", CircuitReport("succeeded"), now=8.0) == opened
    other = circuit_key("b", "primary", "http://127.0.0.1:9/v1")
    await s.report_circuit(other, "b", FAILED, now=9.0)
    assert [c.key for c in await s.list_circuits("a")] == [KEY]
    assert [c.failures for c in await s.list_circuits("b")] == [1]


async def check_one_probe_closes_or_reopens_the_circuit(h: Harness) -> None:
    """Once open for ``open_s``, one claim gets the probe and the next ones do not; the
    probe's failure opens the circuit again, a later probe's success closes it; a
    claim whose holder never reported lapses, and its late report changes nothing."""
    s = h.store
    for now in (1.0, 2.0, 3.0):
        await s.report_circuit(KEY, "a", FAILED, now=now)
    early = await s.report_circuit(KEY, "a", _claim("p1"), now=32.9)
    assert (early.state, early.probe) == ("open", None)  # not open long enough yet
    won = await s.report_circuit(KEY, "a", _claim("p1"), now=33.0)
    assert (won.state, won.probe, won.probe_until) == ("half_open", "p1", 43.0)
    lost = await s.report_circuit(KEY, "a", _claim("p2"), now=33.5)
    assert lost == won
    assert await s.report_circuit(KEY, "a", FAILED, now=34.0) == won  # not the probe's
    again = await s.report_circuit(KEY, "a", CircuitReport("failed", probe="p1"), now=35.0)
    assert (again.state, again.open_until, again.opened, again.probe) == ("open", 65.0, 2, None)
    second = await s.report_circuit(KEY, "a", _claim("p3", hold_s=5.0), now=65.0)
    assert second.probe == "p3"
    # p3's process died: its claim lapses, and p4 may probe.
    assert (await s.report_circuit(KEY, "a", _claim("p4"), now=69.0)).probe == "p3"
    taken = await s.report_circuit(KEY, "a", _claim("p4"), now=70.0)
    assert taken.probe == "p4"
    assert await s.report_circuit(KEY, "a", CircuitReport("succeeded", probe="p3"), now=71) == taken
    closed = await s.report_circuit(KEY, "a", CircuitReport("succeeded", probe="p4"), now=72.0)
    assert (closed.state, closed.failures, closed.probe, closed.opened) == ("closed", 0, None, 2)
    late = await s.report_circuit(KEY, "a", CircuitReport("failed", probe="p4"), now=73.0)
    assert late == closed  # its probe is over: a report as the probe counts no more


async def check_reports_race_from_two_stores(h: Harness) -> None:
    """Forty failures reported at once from two stores on one database are each
    counted once; of forty claims of the due probe, exactly one wins."""
    peer = await h.open_peer()
    try:
        stores = [h.store, peer]
        many = CircuitReport("failed", threshold=1000, open_s=30.0)
        await asyncio.gather(
            *(stores[i % 2].report_circuit(KEY, "a", many, now=1.0) for i in range(40))
        )
        counted = await h.store.get_circuit(KEY)
        assert counted is not None and (counted.failures, counted.version) == (40, 40)
        opens = CircuitReport("failed", threshold=41, open_s=30.0)
        assert (await peer.report_circuit(KEY, "a", opens, now=2.0)).state == "open"
        claims = await asyncio.gather(
            *(stores[i % 2].report_circuit(KEY, "a", _claim(f"p{i}"), now=40.0) for i in range(40))
        )
        winners = {c.probe for c in claims}
        assert len(winners) == 1
        [winner] = winners
        assert sum(c.probe == f"p{i}" for i, c in enumerate(claims)) == 1
        stored = await h.store.get_circuit(KEY)
        assert stored is not None and stored.probe == winner and stored.state == "half_open"
    finally:
        await peer.close()


CIRCUIT_CHECKS = [
    check_circuit_opens_at_its_threshold,
    check_one_probe_closes_or_reopens_the_circuit,
    check_reports_race_from_two_stores,
]
"""The circuit checks, in a stable order."""
