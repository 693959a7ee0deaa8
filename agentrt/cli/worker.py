"""The ``agentrt worker`` command: serve the store's queue until told to stop.

SIGTERM (or Ctrl-C) drains: the worker takes nothing new, lets the runs it
executes end within ``--grace`` seconds, gives the leases of the others back for
other workers to take up, and exits 0. A second signal gives them back at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from agentrt._text import count
from agentrt.cli._shared import EXIT_OK, print_json, runtime, settings_of, with_store
from agentrt.engine import Runtime, Serving, live_workers
from agentrt.errors import StoreUnavailable, UsageError
from agentrt.server.health import health_server

__all__ = ["add_parser"]

_SERVER_STORES = ("postgresql://", "postgres://")


def add_parser(sub: Any) -> None:
    """Add ``agentrt worker`` to the command line's subcommands."""
    w = sub.add_parser("worker", help="serve the queue: execute queued and interrupted runs")
    w.add_argument("--concurrency", type=int, default=100, help="runs claimed at once (100)")
    w.add_argument("--name", help="how `agentrt workers` shows this worker (default: its id)")
    w.add_argument(
        "--poll",
        type=float,
        default=1.0,
        help="seconds between looks at the queue when no write wakes the worker (1.0)",
    )
    w.add_argument(
        "--grace",
        type=float,
        default=25.0,
        help="seconds a drain lets runs end before giving them back (25)",
    )
    w.add_argument("--health-port", type=int, help="serve /healthz and /readyz on this port")
    w.add_argument("--health-host", default="0.0.0.0", help="address of the checks (0.0.0.0)")
    w.set_defaults(handler=_cmd_worker)
    ws = sub.add_parser("workers", help="the live workers of the store, with the runs they hold")
    ws.set_defaults(handler=_cmd_workers)


async def _cmd_worker(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: give at least 1")
    if args.poll <= 0 or args.grace < 0:
        raise UsageError("--poll must be more than 0 and --grace at least 0 (seconds)")
    rt = await _started(args)
    if rt is None:
        return EXIT_OK  # told to stop before the store answered
    async with rt:
        _collect_less()
        serving = rt.serving(concurrency=args.concurrency, poll_s=args.poll, name=args.name)
        name = args.name or rt.owner
        main = asyncio.current_task()
        with _signals(serving, main, name):
            async with _health(args, serving) as port:
                if port is not None:
                    print(f"worker {name}: health checks on port {port}", file=sys.stderr)
                print(f"worker {name} serving; SIGTERM or Ctrl-C drains", file=sys.stderr)
                try:
                    left = await serving.run(grace_s=args.grace)
                except asyncio.CancelledError:
                    left = sorted(serving.worker.executions)
                    _uncancel(main)
        if left:
            unfinished = count(len(left), "unfinished run")
            print(f"worker {name}: giving back {unfinished}", file=sys.stderr)
    print(f"worker {name} stopped", file=sys.stderr)
    return EXIT_OK


async def _started(args: argparse.Namespace) -> Runtime | None:
    """The worker's runtime, started. A database server that does not answer yet (it
    starts with the workers, or restarts) is tried again with backoff until it does,
    or until SIGTERM or Ctrl-C stops the worker (``None``); a local store that
    cannot be opened is an error at once."""
    stop = asyncio.Event()
    backoff = 0.5
    with _signals_to(stop):
        while True:
            rt = runtime(args, live=False)
            try:
                await rt.start()
                return rt
            except StoreUnavailable as exc:
                await rt.close()
                if not str(args.store or "").startswith(_SERVER_STORES):
                    raise
                print(f"worker: {exc}; trying again in {backoff:g}s", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await stop.wait()
            if stop.is_set():
                return None
            backoff = min(backoff * 2, 15.0)


@contextlib.contextmanager
def _signals_to(stop: asyncio.Event) -> Any:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _collect_less() -> None:
    """Tune the cycle collector for a process that holds many runs at once.

    A worker keeps every run it executes (its conversation, its tasks and
    futures) alive for seconds; with the default thresholds the collector
    traverses them over and over, and with 1,000 runs in flight it spent about
    a third of the worker's CPU doing so. Objects made while starting (modules,
    schemas, resources) are frozen out of collection altogether, and the young
    generation is collected after 20,000 allocations instead of 700. Memory is
    still freed by reference counting as before; only cycles wait longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


@contextlib.contextmanager
def _signals(serving: Serving, main: asyncio.Task[Any] | None, name: str) -> Any:
    """The first SIGTERM or SIGINT drains; the next one stops at once."""
    loop = asyncio.get_running_loop()
    told = 0

    def on_signal() -> None:
        nonlocal told
        told += 1
        if told == 1:
            print(f"worker {name} draining", file=sys.stderr)
            serving.drain()
        elif main is not None:
            main.cancel()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _health(args: argparse.Namespace, serving: Serving) -> AsyncIterator[int | None]:
    if args.health_port is None:
        yield None
        return
    try:
        server = health_server(lambda: serving.state, port=args.health_port, host=args.health_host)
        port = await server.__aenter__()
    except OSError as exc:
        reason = exc.strerror or exc
        raise UsageError(f"--health-port {args.health_port}: cannot listen ({reason})") from None
    try:
        yield port
    finally:
        await server.__aexit__(None, None, None)


async def _cmd_workers(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        ttl = settings_of(args).lease_ttl_s
        workers = await live_workers(store, now=time.time(), ttl_s=ttl)
    finally:
        await store.close()
    if args.json:
        print_json([w.to_dict() for w in workers])
        return EXIT_OK
    if not workers:
        print("no live workers (start one with `agentrt worker`)")
        return EXIT_OK
    now = time.time()
    print(f"{'NAME':<20} {'PHASE':<9} {'RUNS':>9} {'BEAT':>6}  ID")
    for w in workers:
        runs = f"{len(w.runs)}/{w.concurrency}"
        beat = f"{max(0.0, now - w.heartbeat_at):.0f}s"
        print(f"{w.name[:20]:<20} {w.phase:<9} {runs:>9} {beat:>6}  {w.id}")
        for run_id in w.runs:
            print(f"  {run_id}")
    return EXIT_OK


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    # The second signal cancelled the command itself: what is left is an orderly close.
    if task is not None:
        while task.uncancel():
            pass
