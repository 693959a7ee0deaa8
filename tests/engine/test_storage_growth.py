"""Storage grows with what happens, not with the length of the conversation."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import call, resources, rules

TURNS = 200


def _db_bytes(path: Path) -> int:
    """Bytes the database occupies as a reader sees it (WAL frames included)."""
    with sqlite3.connect(path) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


async def test_session_of_200_turns_grows_linearly_and_gc_reclaims(
    tmp_path: Path, model_server: ModelTestServer
) -> None:
    db = tmp_path / "growth.db"
    model_server.set_rules(
        rules(
            {"tool_calls": [call("add", a=2, b=2)]},
            {"content": "turn answer: {input} gives {last_tool_result}. " + "x" * 200},
        )
    )
    store = await SqliteStore.open(db)
    sizes: list[int] = []
    try:
        async with Runtime(store) as rt:
            await rt.apply(resources(model_server.url, tools=["add"]))
            for turn in range(TURNS):
                result = await rt.run("bot", f"question {turn:03d}", session="long")
                assert result.ok, result.reason
                sizes.append(_db_bytes(db))
        # The conversation really grew: the last request carried every earlier turn.
        last_messages = model_server.requests[-1]["messages"]
        assert len(last_messages) == 1 + 4 * (TURNS - 1) + 3  # system, 199 turns, this turn
        early = (sizes[49] - sizes[9]) / 40
        late = (sizes[199] - sizes[159]) / 40
        # Bounded per turn: a late turn costs about what an early turn did, although
        # its conversation is ~10x longer (quadratic storage would make it ~10x more).
        assert late < early * 1.5 + 512, (early, late)
        assert late < 4096, late
        before_gc = _db_bytes(db)
        removed = await store.gc(finished_before=time.time() + 1)
        assert removed.runs == TURNS and removed.sessions == 1
        assert await store.list_runs() == []
        assert _db_bytes(db) < before_gc / 2
    finally:
        await store.close()
