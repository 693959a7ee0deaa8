"""The benchmark's PostgreSQL system: one query end to end in a schema of its own, a
stated skip without a server, and ``bench/run.py`` measuring it in quick mode; and the
control plane's bench (``python -m bench.api_bench``) in its quick form, smallest cases.

They need the PostgreSQL of tests/pg.py; without it they skip loudly (under
``CI=true`` a skip fails the run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.state import Store
from bench import api_bench, fleet_bench
from bench import run as bench_run
from bench.agentrt_bench import POSTGRES_ENV, AgentrtPostgresSystem, postgres_unavailable
from bench.common import FINAL_ANSWER, LONG_TOOL_CALLS, query_text, script
from bench.systems import SYSTEMS
from tests import pg

CLOSED_PORT = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"
"""A URL nothing listens on."""


def _schema_exists(schema: str) -> bool:
    with pg.admin() as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
        return bool(row.fetchone()[0])


def _bench_schemas() -> set[str]:
    with pg.admin() as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'agentrt\\_bench\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


async def test_postgres_system_runs_a_query_in_a_schema_it_drops() -> None:
    pg.admin().close()  # skips loudly without a server
    async with ModelTestServer(script()) as server:
        system = AgentrtPostgresSystem(server.url, base=pg.URL)
        async with system:
            assert await system.run(query_text("long", 0)) == FINAL_ANSWER
            assert _schema_exists(system.schema)
            with pg.admin() as conn:
                tools = conn.execute(
                    f'SELECT count(*) FROM "{system.schema}".events WHERE type = %s',
                    ("tool.result",),
                ).fetchone()
            assert tools is not None and tools[0] == LONG_TOOL_CALLS
        assert len(server.requests) == LONG_TOOL_CALLS + 1
    assert not _schema_exists(system.schema)


def test_unreachable_postgres_is_a_stated_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = postgres_unavailable(CLOSED_PORT)
    assert reason is not None
    assert "PostgreSQL unreachable at postgresql://postgres@127.0.0.1:1/test" in reason
    assert POSTGRES_ENV in reason
    sd = next(s for s in SYSTEMS if s.name == "agentrt-postgres")
    assert not sd.extra  # measured by default
    monkeypatch.setenv(POSTGRES_ENV, CLOSED_PORT)
    for workload in ("step", "throughput"):
        assert bench_run._skip(workload, sd) == {"skipped": reason}
    storage = bench_run._skip("storage", sd)
    assert storage is not None and "not measured" in storage["skipped"]


def test_run_measures_step_and_throughput_on_postgres(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _bench_schemas()
    monkeypatch.setenv(POSTGRES_ENV, pg.URL)
    argv = ["--quick", "--runs", "2", "--server", "thread", "--json"]
    argv += ["--only", "step,throughput", "--only", "bare,agentrt-postgres"]
    assert bench_run.main(argv) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    step, tp = results["step"]["agentrt-postgres"], results["throughput"]["agentrt-postgres"]
    assert step["run_ms"]["n"] == 2 and step["ms_per_step"] > 0
    assert tp["queries_per_s"] > 0 and tp["vs_ideal"] >= 1.0
    assert "ms_per_step" in results["step"]["bare"]
    assert _bench_schemas() <= before  # each system dropped the schema it made


def test_api_bench_quick_runs_its_smallest_cases_end_to_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--quick", "--stores", "sqlite:1", "--clients", "5", "--json"]
    assert api_bench.main(argv) == 0  # 1 if a case failed a check (a run twice, an event lost)
    doc = json.loads(capsys.readouterr().out)
    [api] = doc["api"]["rows"]
    assert (api["store"], api["replicas"]) == ("sqlite", 1)
    assert api["queries_per_s"] > 0 and api["bare"]["queries_per_s"] > 0
    assert api["x_bare"] == api["bare"]["queries_per_s"] / api["queries_per_s"]
    assert api["serve_cpu_ms_per_query"] > 0
    one, five = doc["sse"]["rows"]
    assert (one["clients"], five["clients"]) == (1, 5)
    assert one["events"] == five["events"] > 10  # the short run's whole log, to each client
    assert five["delivered"] >= 5 * (five["events"] - 4)  # all but the events before the window
    assert 0 < five["terminal_ms"]["p50"] <= five["terminal_ms"]["max"]
    assert "serve_cpu_us_per_extra_event" in five


def test_circuit_bench_measures_both_stores(capsys: pytest.CaptureFixture[str]) -> None:
    pg.admin().close()  # a loud skip without PostgreSQL
    from bench import circuit_bench

    assert circuit_bench.main(["--quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["sqlite", "postgresql"]
    assert all("healthy call" in line and "failure report" in line for line in lines)


async def test_fleet_bench_admits_and_dispatches_with_runs_queued(tmp_path: Path) -> None:
    url = fleet_bench._stores(tmp_path)["sqlite"]
    measured = await fleet_bench.admission_latency(url, queued=20)
    assert set(measured) == {"admit_median_ms", "admit_p95_ms", "dispatch_median_ms",
                             "dispatch_p95_ms"}  # fmt: skip
    assert 0 < measured["admit_median_ms"] <= measured["admit_p95_ms"]
    assert 0 < measured["dispatch_median_ms"] <= measured["dispatch_p95_ms"]
    async with Store.from_url(url) as store:
        # Every query was admitted as a run: 20 queued before, 200 measured, 200 claimed.
        assert len(await store.list_runs(limit=1000)) == 220
        assert len(await store.list_runs(statuses=["queued"], limit=1000)) == 20


def test_affinity_bench_reports_more_cache_hits_with_affinity_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Quick: 5 sessions of 2 turns over three prefix-caching replicas, on and off."""
    assert bench_run.main(["--quick", "--only", "affinity", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["affinity"]
    assert row["sessions"] == 5 and row["turns"] == 2
    on, off = row["on"], row["off"]
    assert on["prompt_tokens"] == off["prompt_tokens"] > 0
    assert on["hit_rate"] > off["hit_rate"] > 0
    assert sum(on["calls_per_replica"]) == sum(off["calls_per_replica"]) == 5 * 2 * 2
