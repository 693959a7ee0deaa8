"""A run whose every write the store refuses (here: PostgreSQL reports its disk full
for that run alone) is taken up again with growing pauses, not in a tight loop, while
the worker goes on with the others; once the store accepts it, it finishes."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agentrt import Runtime
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from tests.conftest import resources, rules
from tests.pg import admin, fresh_schema, url_of


async def test_a_run_the_store_keeps_refusing_is_retaken_with_growing_pauses(
    model_server: ModelTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    model_server.set_rules(rules({"content": "done"}))
    conn = admin()
    with fresh_schema() as schema:
        url = url_of(schema)
        async with Runtime(url, resume_interrupted=False) as rt:
            await rt.apply(resources(model_server.url))
            runs = [await rt.submit("bot", f"q{i}", start=False) for i in range(3)]
            poisoned = runs[0].id
            conn.execute(
                f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger AS $$ BEGIN '
                f"IF NEW.id = '{poisoned}' AND NEW.last_seq > OLD.last_seq THEN "
                "RAISE EXCEPTION 'no space left' USING ERRCODE = '53100'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.execute(
                f'CREATE TRIGGER refuse BEFORE UPDATE ON "{schema}".runs '
                f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
            )
            caplog.set_level(logging.ERROR, logger="agentrt.engine.worker")
            serving = rt.serving(concurrency=10, poll_s=0.1)
            serve = asyncio.create_task(serving.run(grace_s=5))
            try:
                await asyncio.sleep(6.0)
                attempts = sum(poisoned in r.getMessage() for r in caplog.records)
                # Pauses of 0.5, 1, 2 and 4 s: 4 or 5 attempts in 6 s, not hundreds.
                assert 2 <= attempts <= 6, attempts
                # Nobody waits on a served run: its line says why it stopped, whole.
                said = [r.getMessage() for r in caplog.records if poisoned in r.getMessage()]
                assert all("(StoreFull: " in line and "no space left" in line for line in said)
                async with Store.from_url(url) as store:
                    for other in runs[1:]:
                        run = await store.get_run(other.id)
                        assert run is not None and run.status == "succeeded"
                    conn.execute(f'DROP TRIGGER refuse ON "{schema}".runs')
                    deadline = time.monotonic() + 40
                    while (run := await store.get_run(poisoned)) and run.status != "succeeded":
                        assert time.monotonic() < deadline, run
                        await asyncio.sleep(0.1)
            finally:
                serving.drain()
                await serve
    conn.close()
