"""A non-idempotent test tool whose effect is a row in PostgreSQL, and a count of them.

``pg_charge`` inserts one row per call into ``effects`` of the schema named by
``AGENTRT_TEST_PG_SCHEMA`` (database ``test`` at 127.0.0.1:5432, user postgres),
with the call's idempotency key and a sequence number. The key is deliberately
not unique: a duplicated effect is a second row, which the tests count.

``AGENTRT_TEST_PG_BEFORE_S`` and ``AGENTRT_TEST_PG_AFTER_S`` make the call wait
before and after its insert, so a test can kill a process on either side of the
effect. The ``pg_schema`` fixture (tests/conftest.py) makes the schema.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from agentrt.tools.base import ToolContext

DSN = os.environ.get(
    "AGENTRT_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
)


def _table() -> str:
    return f'"{os.environ["AGENTRT_TEST_PG_SCHEMA"]}".effects'


async def pg_charge(amount: int, ctx: ToolContext) -> str:
    """Charge an amount: one row in PostgreSQL per call (NOT idempotent)."""
    import psycopg

    await asyncio.sleep(float(os.environ.get("AGENTRT_TEST_PG_BEFORE_S", "0")))
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {_table()} (key, amount, pid) VALUES (%s, %s, %s)",
            (ctx.idempotency_key, amount, os.getpid()),
        )
    await asyncio.sleep(float(os.environ.get("AGENTRT_TEST_PG_AFTER_S", "0")))
    return f"charged {amount}"


def effect_rows(schema: str) -> Counter[str]:
    """How many rows (effects) each idempotency key has."""
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = conn.execute(f'SELECT key FROM "{schema}".effects ORDER BY seq').fetchall()
    return Counter(str(row[0]) for row in rows)
