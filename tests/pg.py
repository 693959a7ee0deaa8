"""The PostgreSQL the tests use: 127.0.0.1:5432, database ``test``, user postgres, trust
auth (``AGENTRT_TEST_PG_URL`` names another). Each test module, or test, keeps its
stores in a schema of its own, made fresh and dropped after.

Without a server the tests that need one are skipped, loudly; under ``CI=true`` a
skip fails the run (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

URL = os.environ.get(
    "AGENTRT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test?connect_timeout=5"
)
"""The server's URL, without a schema."""


def admin() -> Any:
    """A sync autocommit connection to the test server, or a loud skip without one."""
    try:
        import psycopg

        return psycopg.connect(URL, autocommit=True)
    except Exception as exc:  # no driver, no server: say so loudly (CI=true turns it red)
        pytest.skip(
            "SKIPPED LOUDLY: this test needs PostgreSQL (database test at 127.0.0.1:5432, "
            f"user postgres, trust auth) and psycopg: {exc}"
        )


def url_of(schema: str) -> str:
    """The store URL of ``schema`` on the test server."""
    return f"{URL}{'&' if '?' in URL else '?'}schema={schema}"


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema name nobody uses, dropped (with whatever was made in it) on exit."""
    conn = admin()
    schema = f"agentrt_test_{secrets.token_hex(4)}"
    try:
        yield schema
    finally:
        with conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def empty(schema: str) -> None:
    """Delete every row of the store in ``schema`` (quicker than a new schema)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        # Every table the migrations made but the schema's version, so a new one is
        # never left holding rows from the check before.
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' AND table_name <> 'schema_version'",
            (schema,),
        )
        tables = ", ".join(f'"{schema}"."{row[0]}"' for row in await cur.fetchall())
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
