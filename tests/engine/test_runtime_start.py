"""A Runtime whose start fails leaves nothing open: its HTTP session, lease renewal
and store (when it opened it) are closed before the error reaches the caller."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.errors import StoreUnavailable
from agentrt.state import NewRun, SqliteStore, open_store


async def test_a_start_that_fails_closes_what_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "agentrt.db"
    writable = await SqliteStore.open(path)
    await writable.create_run(NewRun("run_queued", "default", "bot", 1.0))  # to resume
    await writable.close()
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: problems.append(context))
    store = await open_store(str(path), read_only=True)
    try:
        runtime = Runtime(store, resume_interrupted=True)
        # Resuming claims the queued run: a write the read-only store refuses.
        with pytest.raises(StoreUnavailable, match="read-only"):
            await runtime.start()
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("agentrt-")]
        assert tasks == [], tasks  # no lease renewal left running
        gc.collect()
        await asyncio.sleep(0)
    finally:
        await store.close()
        loop.set_exception_handler(None)
    assert not [p for p in problems if "Unclosed" in str(p.get("message"))], problems
