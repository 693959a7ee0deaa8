"""Cached prompt tokens, over real HTTP to a test model server with a prefix cache:
each step records the provider's count (``cached`` on ``model.result``), its cost
prices them apart (uncached input at the input price, cached at the cached price,
output at the output price), and ``agentrt cache`` reports the hit rate per Agent
and per Model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.cli.main import main
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Pricing
from agentrt.state import SqliteStore, Store
from tests.conftest import call, resources, rules

SCRIPT = rules({"tool_calls": [call("add", a=1, b=2)]}, {"content": "sum {last_tool_result}"})
PRICING = {"input_per_mtok": 3.0, "cached_input_per_mtok": 0.3, "output_per_mtok": 15.0}


def _docs(url: str) -> list[Any]:
    return resources(
        url,
        tools=["add"],
        model={"pricing": PRICING},
        agent={"instructions": "You add numbers with the add tool. " * 20},
    )


async def _results(store: Store, run_id: str) -> list[dict[str, Any]]:
    return [e.data for e in await store.read_events(run_id) if e.type == ev.MODEL_RESULT]


async def test_cached_tokens_are_recorded_and_priced_apart(any_store: Store) -> None:
    async with ModelTestServer(SCRIPT, prefix_cache=True) as server, Runtime(any_store) as rt:
        await rt.apply(_docs(server.url))
        first = await rt.run("bot", "add one and two", session="s")
        second = await rt.run("bot", "again", session="s")
    steps = await _results(any_store, first.run_id) + await _results(any_store, second.run_id)
    assert "cached" not in steps[0]  # nothing served before it
    assert all(step["cached"] > 0 for step in steps[1:])
    cache = server.prefix_cache
    assert cache is not None and sum(step["cached"] for step in steps[1:]) == cache.hits
    for step in steps:
        cached = step.get("cached", 0)
        expected = ((step["in"] - cached) * 3.0 + cached * 0.3 + step["out"] * 15.0) / 1e6
        assert step["cost"] == pytest.approx(expected)
    assert second.usage.cost_usd == pytest.approx(sum(s["cost"] for s in steps[2:]))


def test_pricing_without_a_cached_price_charges_cached_tokens_as_input() -> None:
    plain = Pricing(input_per_mtok=2.0, output_per_mtok=4.0)
    assert plain.cost(1000, 10, 600) == plain.cost(1000, 10) == pytest.approx(2040 / 1e6)
    cheap = Pricing(input_per_mtok=2.0, output_per_mtok=4.0, cached_input_per_mtok=0.5)
    assert cheap.cost(1000, 10, 600) == pytest.approx((400 * 2.0 + 600 * 0.5 + 40) / 1e6)


async def _runs(path: Path, url: str) -> None:
    async with await SqliteStore.open(path) as store, Runtime(store) as rt:
        await rt.apply(_docs(url))
        for turn in range(3):
            await rt.run("bot", f"turn {turn}", session="s")


def test_the_cache_command_reports_the_hit_rate_per_agent_and_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "agentrt.db"
    assert main(["--store", str(db), "cache"]) == 0
    assert "no model step" in capsys.readouterr().out
    server = ModelTestServer(SCRIPT, prefix_cache=True)
    url = server.start_in_thread()
    try:
        asyncio.run(_runs(db, url))
    finally:
        server.stop_thread()
    assert main(["--store", str(db), "cache", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert server.prefix_cache is not None
    prompt, cached = server.prefix_cache.prompt_tokens, server.prefix_cache.hits
    expected = {"steps": 6, "prompt_tokens": prompt, "cached_tokens": cached,
                "hit_rate": round(cached / prompt, 4)}  # fmt: skip
    assert shown == {"runs": 3, "agents": {"bot": expected}, "models": {"m": expected}}
    assert 0.5 < shown["models"]["m"]["hit_rate"] < 1
    assert main(["--store", str(db), "cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STEPS", "PROMPT", "CACHED", "HIT", "RATE"]
    assert lines[1].split()[:3] == ["agent", "bot", "6"] and lines[2].split()[:2] == ["model", "m"]
    assert lines[2].endswith(f"{cached / prompt:.1%}")
