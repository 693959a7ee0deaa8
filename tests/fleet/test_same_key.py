"""The same query idempotency key submitted at once from ten processes starts one run."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store

from .harness import CMD, ROOT, SCRIPT, Fleet, apply_and_queue

pytestmark = pytest.mark.slow

PROCESSES = 10


async def test_one_key_from_ten_processes_starts_exactly_one_run(
    fleet_url: str, tmp_path: Path
) -> None:
    async with ModelTestServer(SCRIPT) as server:
        await apply_and_queue(fleet_url, server.url, 0)
        env = Fleet.on(fleet_url, tmp_path).env
        # Each process starts, then waits at a barrier file, so the submissions race.
        barrier = tmp_path / "go"
        script = (
            "import os, sys, time\n"
            f"while not os.path.exists({str(barrier)!r}): time.sleep(0.001)\n"
            "from agentrt.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        procs = [_submitter(script, env) for _ in range(PROCESSES)]
        await asyncio.sleep(1.5)  # every interpreter is up and waiting
        barrier.touch()
        answers = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
        async with Store.from_url(fleet_url) as store:
            runs = await store.list_runs(limit=100)
    assert [p.returncode for p in procs] == [0] * PROCESSES, [err for _, err in answers]
    ids = {out.strip() for out, _ in answers}
    assert len(ids) == 1, ids
    assert [r.id for r in runs] == list(ids)
    assert runs[0].idempotency_key == "order-42"


def _submitter(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    args = ["run", "bot", "charge once", "--idempotency-key", "order-42", "--queue"]
    return subprocess.Popen(
        [CMD[0], "-c", script, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
