"""Fixtures of the store tests: a PostgreSQL schema per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import fresh_schema


@pytest.fixture(scope="module")
def pg_module_schema() -> Iterator[str]:
    """A schema of the test PostgreSQL for this module's stores, dropped after it."""
    with fresh_schema() as schema:
        yield schema
