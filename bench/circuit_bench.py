"""What a model endpoint's circuit breaker costs a model call, on SQLite and PostgreSQL.

    python -m bench.circuit_bench            # about 10 s; --quick: a smoke test

Three numbers per store:

- a call of a healthy endpoint whose circuit this process read less than a second
  ago: asking the circuit before the call and telling it the answer after, with
  no store call (what every model call pays);
- a read of the circuit from the store (once a second per endpoint and process);
- a failure's report (one write transaction: what each failed call adds).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from agentrt.engine.circuit_breakers import Circuits
from agentrt.state import SqliteStore, Store
from agentrt.state.circuits import CircuitReport, circuit_key
from bench.agentrt_bench import postgres_base, postgres_unavailable
from bench.serve_proc import _drop_schema

__all__ = ["main", "measure"]


async def measure(store: Store, calls: int, ops: int) -> dict[str, float]:
    """Microseconds per cached call, milliseconds per read and per failure report."""
    circuits = Circuits()
    key = circuit_key("bench", "m", f"http://127.0.0.1:9/{secrets.token_hex(4)}")
    await circuits.admit(store, key, "bench", now=time.time(), hold_s=60.0)
    started = time.perf_counter()
    for _ in range(calls):
        await circuits.admit(store, key, "bench", now=1.0, hold_s=60.0)
        await circuits.succeeded(store, key, "bench", probe=None, now=1.0)
    cached_us = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for _ in range(ops):
        await store.get_circuit(key)
    read_ms = (time.perf_counter() - started) / ops * 1e3
    failed = CircuitReport("failed", threshold=10**9, open_s=30.0)
    started = time.perf_counter()
    for _ in range(ops):
        await store.report_circuit(key, "bench", failed, now=time.time())
    write_ms = (time.perf_counter() - started) / ops * 1e3
    return {"cached_us": cached_us, "read_ms": read_ms, "failure_ms": write_ms}


async def _both(calls: int, ops: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with await SqliteStore.open(Path(tmp) / "bench.db") as sqlite:
            _show("sqlite", await measure(sqlite, calls, ops))
    base = postgres_base()
    reason = postgres_unavailable(base)
    if reason is not None:
        print(f"postgresql: skipped: {reason}")
        return
    from agentrt.state import PostgresStore

    schema = f"agentrt_bench_{secrets.token_hex(4)}"
    sep = "&" if "?" in base else "?"
    try:
        async with PostgresStore.from_url(f"{base}{sep}schema={schema}") as pg:
            _show("postgresql", await measure(pg, calls, ops))
    finally:
        _drop_schema(base, schema)


def _show(name: str, cost: dict[str, float]) -> None:
    print(
        f"{name:<11} healthy call {cost['cached_us']:.1f} us   read {cost['read_ms']:.3f} ms   "
        f"failure report {cost['failure_ms']:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--quick`` measures little (a smoke test)."""
    parser = argparse.ArgumentParser(prog="python -m bench.circuit_bench")
    parser.add_argument("--quick", action="store_true", help="few repetitions")
    args = parser.parse_args(argv)
    calls, ops = (1000, 20) if args.quick else (100_000, 500)
    asyncio.run(_both(calls, ops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
