"""The store every fleet test runs its workers on: each test runs once per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def fleet_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store's URL."""
    return f"sqlite:///{tmp_path / 'fleet.db'}"
