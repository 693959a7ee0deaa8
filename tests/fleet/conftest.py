"""The store every fleet test runs its workers on: each test runs once per backend,
SQLite on one host and PostgreSQL (a fresh schema per test on the test server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import admin, fresh_schema, url_of

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def fleet_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store's URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    admin().close()  # a loud skip without a server
    with fresh_schema() as schema:
        yield url_of(schema)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed fleet test shows what its workers said (the tail of each one's log):
    a run left open is explained there, not by the assertion."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp, Path):
        return
    for log in sorted(tmp.glob("*.err")):
        tail = log.read_text(errors="replace")[-6000:]
        report.sections.append((f"worker log {log.name} (tail)", tail))
