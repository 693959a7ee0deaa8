"""An execution writes under its lease's fencing token: once the lease was granted
again, even to the same owner, the old execution's writes are refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import SqliteStore
from tests.conftest import resources, rules


async def test_a_regranted_lease_fences_off_the_old_execution(
    model_server: ModelTestServer, tmp_path: Path
) -> None:
    model_server.set_rules(rules({"content": "too late"}))
    model_server.inject_delay(1.5)
    store = await SqliteStore.open(tmp_path / "agentrt.db")
    try:
        async with Runtime(store, resume_interrupted=False, lease_ttl_s=3600) as rt:
            await rt.apply(resources(model_server.url))
            run = await rt.submit("bot", "hi")
            while not model_server.requests:
                await asyncio.sleep(0.01)
            # The lease is granted again to the same owner while the model thinks (as a
            # worker paused past its lease would claim the run back): a new token.
            before = await store.get_run(run.id)
            await store.release_lease(run.id, rt.owner)
            again = await store.acquire_lease(run.id, rt.owner, 3600, now=time.time())
            assert before is not None and again is not None
            assert again.lease_token > before.lease_token
            # The execution is still in flight under the old token.
            await asyncio.sleep(3.0)  # the model answers; the old execution tries to write
            events = await store.read_events(run.id)
            stored = await store.get_run(run.id)
    finally:
        await store.close()
    assert not [e for e in events if e.type in (ev.MODEL_RESULT, ev.RUN_FINISHED)], [
        e.type for e in events
    ]
    assert stored is not None and not stored.finished
