"""Rendering of runs: status colours follow the code's status sets."""

from __future__ import annotations

from agentrt.cli.render import Style
from agentrt.state import ACTIVE_STATUSES, RUN_STATUSES, TERMINAL_STATUSES, WAITING_STATUSES


def test_every_status_has_the_colour_of_its_kind() -> None:
    style = Style(enabled=True)
    colour = {s: style.status(s).split("m", 1)[0] for s in RUN_STATUSES}
    assert {colour[s] for s in WAITING_STATUSES} == {"\x1b[33"}  # a person must act
    assert {colour[s] for s in ACTIVE_STATUSES} == {"\x1b[36"}
    assert colour["succeeded"] == "\x1b[32"
    assert {colour[s] for s in TERMINAL_STATUSES - {"succeeded"}} == {"\x1b[31"}
    assert set(RUN_STATUSES) == ACTIVE_STATUSES | WAITING_STATUSES | TERMINAL_STATUSES
