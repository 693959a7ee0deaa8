"""``agentrt circuits``: each model endpoint's circuit of a tenant, in words and as JSON,
read from the store every worker writes it to; nothing shown for a tenant whose
endpoints never failed."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest

from agentrt.cli.main import main
from agentrt.state import SqliteStore
from agentrt.state.circuits import CircuitReport, circuit_key


async def _circuits(path: Path) -> None:
    async with await SqliteStore.open(path) as store:
        now = time.time()
        fail = CircuitReport("failed", threshold=2, open_s=60.0)
        flaky = circuit_key("default", "flaky", "http://flaky:8000/v1")
        down = circuit_key("default", "down", "http://down:8000/v1")
        probed = circuit_key("default", "probed", "http://probed:8000/v1")
        await store.report_circuit(flaky, "default", fail, now=now)
        for key in (down, down, probed, probed):
            await store.report_circuit(key, "default", fail, now=now)
        claim = CircuitReport("claim", probe="p", hold_s=30.0)
        await store.report_circuit(probed, "default", claim, now=now + 61)
        await store.report_circuit(circuit_key("other", "m", "http://x/v1"), "other", fail, now=now)


def test_circuits_shows_each_endpoint_of_the_tenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "agentrt.db"
    assert main(["--store", str(db), "circuits", "-n", "nobody"]) == 0
    assert capsys.readouterr().out == "no model endpoint of namespace 'nobody' has failed yet\n"
    asyncio.run(_circuits(db))
    assert main(["--store", str(db), "circuits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "STATE", "OPENED", "ENDPOINT", "NOW"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == ["down", "flaky", "probed"]  # not the other tenant's
    assert rows["flaky"].split()[1:4] == ["closed", "0", "http://flaky:8000/v1"]
    assert rows["flaky"].endswith("calls go through (1 failed call in a row)")
    assert "open" in rows["down"].split()[1]
    assert re.search(r"skipped after 2 failed calls in a row; a probe in (59|60)s$", rows["down"])
    assert rows["probed"].split()[1] == "half_open"
    assert "one call probes it (claimed for" in rows["probed"]
    assert main(["--store", str(db), "circuits", "--json"]) == 0
    shown = {c["model"]: c for c in json.loads(capsys.readouterr().out)}
    assert (shown["down"]["state"], shown["down"]["failures"], shown["down"]["opened"]) == (
        "open", 2, 1
    )  # fmt: skip
    assert shown["probed"]["probe"] == "p" and shown["flaky"]["endpoint"] == "http://flaky:8000/v1"
