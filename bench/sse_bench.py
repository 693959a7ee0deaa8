"""One run's live events fanned out to many clients of one ``agentrt serve``.

``python -m bench.api_bench --only sse [--quick] [--clients N]``

One serve process over a fresh SQLite store runs one query (``long``: 20 tool
calls, 21 model calls, the model server answering after ``latency_s``). Its
first model call is held for ``hold_s`` while N clients open
``GET /v1/runs/{id}/events`` (httpx, one connection each); once every client
has its first event, the measure starts, and it ends when every client has
received ``run.finished``. Reported, for 1 client and for N:

* the time from the terminal event's ``ts`` (stamped by the run as it appends
  it, just before the write) to each client receiving it: p50, p99 and the
  last client (other events may wait in the run's buffer before they are
  written, so their ``ts`` is not when they were stored);
* for each event, the time from the first client receiving it to the last;
* the serve process's CPU over the window, per delivered event (an event of the
  log received by one client), and, against the 1-client case, the CPU each
  further delivered event costs: the fan-out's own price;
* that every client received every event of the log exactly once, in order
  (its ids are 1, 2, 3, ... and each event is the one ``GET /v1/runs/{id}``
  shows), or the case fails saying which did not.

Clients that listen make the executing replica stream the model's replies, so
each also receives ``model.delta`` pieces (counted, not checked: they are live
only and may be dropped by a client that falls behind).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agentrt._text import count
from bench.common import percentile, query_text
from bench.serve_proc import (
    TENANT,
    Serve,
    apply_resources,
    auth,
    make_key,
    start_replicas,
    store_of,
    submit,
    why,
)
from bench.server import TestServer

__all__ = ["Seen", "SseSettings", "fanout_case", "fanout_cases", "follow", "render"]


@dataclass(frozen=True)
class SseSettings:
    """The sse workload's sizes."""

    clients: tuple[int, ...] = (1, 100)
    kind: str = "long"  # the query: long (20 tool calls) or short (3)
    latency_s: float = 0.05
    hold_s: float = 5.0  # the run's first model call waits this long: every client connects

    @classmethod
    def quick(cls) -> SseSettings:
        """A shorter run (3 tool calls): the quick variant."""
        return cls(kind="short", hold_s=2.0)


@dataclass
class Seen:
    """What one client received: the log's events (seq, type, data, time received)
    and the count of live pieces."""

    events: list[tuple[int, str, str, float]] = field(default_factory=list)
    pieces: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)


async def follow(http: httpx.AsyncClient, base: str, key: str, run_id: str, seen: Seen) -> None:
    """Read the run's stream into ``seen`` until ``run.finished``."""
    url = f"{base}/v1/runs/{run_id}/events"
    async with http.stream("GET", url, headers=auth(key)) as response:
        if response.status_code != 200:
            raise RuntimeError(f"stream: {response.status_code} {(await response.aread())!r}")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue  # a keep-alive comment
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")  # one line each: the server's form
                continue
            if not fields:
                continue
            received = time.time()
            if "id" in fields:
                seen.events.append((int(fields["id"]), fields["event"], fields["data"], received))
                seen.connected.set()
            else:
                seen.pieces += 1
            if fields.get("event") == "run.finished":
                return
            fields = {}
    raise RuntimeError("the stream ended before run.finished")


def _check(seen: list[Seen], log: list[dict[str, Any]]) -> None:
    """Every client got every event of ``log`` once, in order, as the log has it."""
    want = [(e["seq"], e["type"]) for e in log]
    if [seq for seq, _ in want] != list(range(1, len(log) + 1)):
        raise RuntimeError("the stored log is not numbered 1, 2, 3, ...")
    for index, client in enumerate(seen):
        got = [(seq, kind) for seq, kind, _, _ in client.events]
        if got != want:
            raise RuntimeError(f"client {index} received {got} of {want}")
        if [json.loads(data) for _, _, data, _ in client.events] != log:
            raise RuntimeError(f"client {index} received events unlike the stored log")


async def _stream_all(
    http: httpx.AsyncClient, serve: Serve, key: str, run_id: str, clients: int, s: SseSettings
) -> tuple[list[Seen], float, float, float]:
    """``clients`` readers of the run; once all have an event, the window's start, then
    its CPU seconds on the server and in this process."""
    seen = [Seen() for _ in range(clients)]
    readers = [asyncio.create_task(follow(http, serve.base, key, run_id, one)) for one in seen]
    try:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(one.connected.wait() for one in seen)), s.hold_s
            )
        except TimeoutError:
            ready = sum(one.connected.is_set() for one in seen)
            raise RuntimeError(
                f"{ready} of {clients} clients connected within {s.hold_s} s"
            ) from None
        window = time.time()
        cpu, own = serve.cpu_s(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        return seen, window, serve.cpu_s() - cpu, time.process_time() - own
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def _measured_run(
    model: TestServer, serve: Serve, key: str, clients: int, s: SseSettings
) -> tuple[list[Seen], list[dict[str, Any]], float, float, float]:
    limits = httpx.Limits(
        max_connections=clients + 10, max_keepalive_connections=clients + 10, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(limits=limits, timeout=120.0) as http:
        await apply_resources(http, serve, key, model.url)
        warm = await submit(http, serve.base, key, query_text("short", 0), "warm", wait=True)
        await follow(http, serve.base, key, warm, Seen())  # the route and its reads warm
        model.set_latency(s.latency_s)
        model.delay_next(s.hold_s)
        run_id = await submit(http, serve.base, key, query_text(s.kind, 1), "fan-out")
        seen, window, cpu, own = await _stream_all(http, serve, key, run_id, clients, s)
        detail = await http.get(f"{serve.base}/v1/runs/{run_id}", headers=auth(key))
        log: list[dict[str, Any]] = detail.raise_for_status().json()["events"]
    return seen, log, window, cpu, own


async def fanout_case(model: TestServer, clients: int, s: SseSettings, tmp: Path) -> dict[str, Any]:
    """One run streamed to ``clients`` clients; its measures (see the module)."""
    with store_of("sqlite", tmp) as url:
        key = make_key(url, TENANT, "operator")
        [serve] = start_replicas(url, tmp, 1)
        try:
            seen, log, window, cpu, own = await _measured_run(model, serve, key, clients, s)
        except Exception as exc:
            raise RuntimeError(f"{why(exc)} (serve said: {serve.said(400)})") from exc
        finally:
            serve.stop()
    _check(seen, log)
    end = log[-1]["ts"]
    last = [one.events[-1][3] - end for one in seen]
    live = [at for one in seen for _, _, _, at in one.events if at >= window]
    spread = _spread(seen, window)
    return {
        "clients": clients,
        "events": len(log),
        "pieces_min": min(one.pieces for one in seen),
        "pieces_max": max(one.pieces for one in seen),
        "terminal_ms": {
            "p50": percentile(last, 50) * 1000,
            "p99": percentile(last, 99) * 1000,
            "max": max(last) * 1000,
        },
        "spread_ms": {"p50": percentile(spread, 50) * 1000, "p99": percentile(spread, 99) * 1000},
        "delivered": len(live),
        "serve_cpu_ms": cpu * 1000,
        "serve_cpu_us_per_event": cpu * 1e6 / len(live),
        "client_cpu_us_per_event": own * 1e6 / len(live),
    }


def _spread(seen: list[Seen], window: float) -> list[float]:
    """For each event every client received in the window: the time from the first
    client receiving it to the last."""
    spread = []
    for index in range(len(seen[0].events)):
        times = [one.events[index][3] for one in seen]
        if min(times) >= window:
            spread.append(max(times) - min(times))
    return spread or [0.0]


async def fanout_cases(model: TestServer, s: SseSettings) -> list[dict[str, Any]]:
    """Every client count of ``s``; a case that fails says why in its row. A row after
    the first also says what each delivered event cost above the first row."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agentrt-sse-") as tmp:
        for clients in s.clients:
            print(f"  sse  {count(clients, 'client')} ...", file=sys.stderr, flush=True)
            try:
                rows.append(await fanout_case(model, clients, s, Path(tmp)))
            except Exception as exc:
                rows.append({"clients": clients, "error": why(exc)})
    base = rows[0] if rows and "error" not in rows[0] else None
    for row in rows[1:]:
        if base is not None and "error" not in row and row["delivered"] > base["delivered"]:
            extra = row["serve_cpu_ms"] - base["serve_cpu_ms"]
            row["serve_cpu_us_per_extra_event"] = (
                extra * 1000 / (row["delivered"] - base["delivered"])
            )
    return rows


def render(rows: list[dict[str, Any]], s: SseSettings) -> str:
    """The sse workload's table."""
    lines = [
        f"one {s.kind} run's events to N clients of one serve (SQLite), model latency "
        f"{s.latency_s * 1000:.0f} ms",
        "",
        "| clients | events each | pieces each | terminal event to client p50 / p99 / last "
        "| first to last client, per event p50 / p99 | serve CPU per delivered event "
        "| above 1 client |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['clients']} | error: {r['error']} | | | | | |")
            continue
        t, e = r["terminal_ms"], r["spread_ms"]
        extra = r.get("serve_cpu_us_per_extra_event")
        lines.append(
            f"| {r['clients']} | {r['events']} | {r['pieces_min']} to {r['pieces_max']} | "
            f"{t['p50']:.1f} / {t['p99']:.1f} / {t['max']:.1f} ms | "
            f"{e['p50']:.1f} / {e['p99']:.1f} ms | {r['serve_cpu_us_per_event']:.0f} µs | "
            + (f"{extra:.0f} µs |" if extra is not None else "— |")
        )
    return "\n".join(lines)
