"""Recovery paths are exactly-once too: a person's ``resolve --rerun``, a resume and a
takeover each claim the step with a conditional write before its effect.

The tool's effect is a row in PostgreSQL (``tests/pg_effects.py``): a duplicated
effect is a second row with the same idempotency key. The agentrt store is SQLite
on disk; the processes killed and raced are the real ``agentrt`` CLI. Races that
natural timing rarely hits are also forced in one process: two runtimes on two
store connections both read the run while a third connection holds SQLite's write
lock, and are let go together.

Every run starts from the same place: its step 2 (``pg_charge``) was stopped
before its effect, and a resume marked it ``unknown`` (the run ``waiting``).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import platform
import random
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agentrt import Runtime
from agentrt.cli.render import Style, render_run_tree
from agentrt.engine import events as ev
from agentrt.models.testserver import ModelTestServer
from agentrt.state import Event, SqliteStore
from tests.conftest import call, resources, rules
from tests.pg_effects import effect_rows

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEP = 2  # model step 1 asks for pg_charge, tool step 2 performs it, model step 3 answers
SCRIPT = rules(
    {"tool_calls": [call("pg_charge", amount=5)]}, {"content": "paid: {last_tool_result}"}
)
REPEAT = 10
NATURAL = 5  # races with real processes at natural timing, on top of REPEAT forced ones
AGENT = {"loop": {"parallel_tool_calls": False, "retry": {"initial_backoff_s": 0.01}}}


# --- set-up ----------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[ModelTestServer]:
    """The test server, slow enough that a kill can land during a model call."""
    async with ModelTestServer(SCRIPT, latency_s=0.3) as srv:
        yield srv


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The store every process of the test shares."""
    s = await SqliteStore.open(tmp_path / "agentrt.db")
    try:
        yield s
    finally:
        await s.close()


def _db(store: SqliteStore) -> Path:
    return Path(store.path)


async def _until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 60) -> None:
    """Poll ``check``; the timeout is a safety net against a hang, not a measurement."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.005)


async def _unknown_runs(
    store: SqliteStore, url: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """``n`` waiting runs whose step 2 is unknown and whose effect never happened."""
    monkeypatch.setenv("AGENTRT_TEST_PG_BEFORE_S", "3600")
    async with Runtime(store, resume_interrupted=False) as rt:
        await rt.apply(resources(url, tools=["pg_charge"], agent=AGENT))
        ids = [(await rt.submit("bot", f"pay {i}")).id for i in range(n)]

        async def all_started() -> bool:
            steps = [await store.read_events(run_id) for run_id in ids]
            return all(any(e.type == ev.TOOL_CALL for e in events) for events in steps)

        await _until(all_started, "every run started its tool call")
    # Leaving the runtime stopped every run in its tool call, before the effect.
    monkeypatch.setenv("AGENTRT_TEST_PG_BEFORE_S", "0")
    async with Runtime(store) as rt:  # resumes them: not idempotent, so unknown
        results = await asyncio.gather(*(rt.wait(run_id) for run_id in ids))
    assert {r.status for r in results} == {"waiting"}, results
    return ids


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


async def _cli(store: SqliteStore, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrt.cli.main",
        "--store",
        str(_db(store)),
        *args,
        env=_env(**env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- what must hold ------------------------------------------------------------


def _waits_for_decision(events: list[Event]) -> bool:
    """Step 2's last attempt is marked unknown, and no decision came after the mark."""
    last: dict[str, int] = {}
    for e in events:
        if e.step == STEP:
            last[e.type] = e.seq
    unknown = last.get(ev.TOOL_UNKNOWN, 0)
    return unknown > last.get(ev.TOOL_CALL, 0) and unknown > last.get(ev.TOOL_DECISION, 0)


def _rows_of(rows: Counter[str], run_id: str) -> int:
    return sum(n for key, n in rows.items() if key.startswith(f"{run_id}:{STEP}:"))


async def _check(store: SqliteStore, schema: str, run_ids: list[str]) -> dict[str, str]:
    """0 duplicated effects, each effect claimed by its own recorded attempt, each
    ``rerun`` decision consumed by one attempt, and the step either recorded once or
    ``unknown`` with the run waiting for a person. Returns each run's outcome."""
    rows = await asyncio.to_thread(effect_rows, schema)
    outcome: dict[str, str] = {}
    for run_id in run_ids:
        run = await store.get_run(run_id)
        events = await store.read_events(run_id)
        assert run is not None
        step = [e for e in events if e.step == STEP]
        attempts = [e for e in step if e.type == ev.TOOL_CALL]
        results = [e for e in step if e.type == ev.TOOL_RESULT]
        reruns = [e for e in step if e.type == ev.TOOL_DECISION]
        done = _rows_of(rows, run_id)
        where = f"run {run_id}: {[(e.seq, e.type) for e in events]}"
        assert done <= 1, f"the effect happened {done} times; {where}"
        # The first attempt died before its effect: every effect is a later attempt's.
        assert done <= len(attempts) - 1, f"an effect without its own recorded attempt; {where}"
        assert len(attempts) - 1 <= len(reruns), f"a decision was consumed twice; {where}"
        assert len(results) <= 1, where
        if results:
            assert done == 1 and run.status == "succeeded", (run.status, done, where)
            outcome[run_id] = "recorded"
        else:
            assert run.status == "waiting", (run.status, where)
            assert _waits_for_decision(events), f"waiting with nothing to decide; {where}"
            outcome[run_id] = "unknown"
    return outcome


# --- SIGKILL during a --rerun re-execution ----------------------------------------

# Where the `resolve --rerun` process is killed, and how its tool call is slowed so
# that the kill lands there: (before the effect, after it) in seconds.
POINTS: dict[str, tuple[str, str]] = {
    "decided": ("30", "0"),  # the decision is recorded (its attempt may be claimed too)
    "claimed": ("30", "0"),  # the re-execution's own intent is recorded, no effect yet
    "effect": ("0", "30"),  # the row is in PostgreSQL, the result is not recorded
    "recorded": ("0", "0"),  # the result is recorded, the run is in its next model call
    "anywhere": ("0.1", "0.1"),  # a random instant of the re-execution
}


def _reached(events: list[Event], rows: int, point: str) -> bool:
    types = [e.type for e in events if e.step == STEP]
    if point == "decided":
        return ev.TOOL_DECISION in types
    if point in ("claimed", "anywhere"):
        return ev.TOOL_CALL in types
    if point == "effect":
        return rows > 0
    return ev.TOOL_RESULT in types


async def _kill_resolvers(
    store: SqliteStore, schema: str, jobs: list[tuple[str, str]], rng: random.Random
) -> None:
    """For each ``(run, point)``: ``agentrt resolve RUN 2 --rerun`` in a child process,
    all at once, each SIGKILLed when its re-execution reaches its point."""
    bases, procs = {}, {}
    for run_id, point in jobs:
        run = await store.get_run(run_id)
        assert run is not None and run.status == "waiting"
        bases[run_id] = run.last_seq
        before, after = POINTS[point]
        procs[run_id] = await _cli(
            store,
            "resolve",
            run_id,
            str(STEP),
            "--rerun",
            "--json",
            AGENTRT_TEST_PG_BEFORE_S=before,
            AGENTRT_TEST_PG_AFTER_S=after,
        )
    points = dict(jobs)
    kill_at: dict[str, float] = {}  # "anywhere": a random instant after the attempt starts
    loop = asyncio.get_running_loop()
    try:

        async def all_killed() -> bool:
            rows = await asyncio.to_thread(effect_rows, schema)
            for run_id, proc in procs.items():
                point = points[run_id]
                if proc.returncode is not None:
                    if run_id not in kill_at:
                        # It finished first: possible only where the kill comes late.
                        assert point in ("recorded", "anywhere"), (point, await proc.communicate())
                        kill_at[run_id] = 0.0
                    continue
                if run_id not in kill_at:
                    events = await store.read_events(run_id, after_seq=bases[run_id])
                    if _reached(events, _rows_of(rows, run_id), point):
                        delay = rng.uniform(0, 0.3) if point == "anywhere" else 0.0
                        kill_at[run_id] = loop.time() + delay
                if run_id in kill_at and loop.time() >= kill_at[run_id]:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            return all(p.returncode is not None for p in procs.values())

        await _until(all_killed, f"every resolver reached its point: {jobs}", within_s=60)
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.communicate()


async def test_sigkill_during_a_rerun_never_repeats_its_effect(
    server: ModelTestServer,
    store: SqliteStore,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = list(POINTS)
    ids = await _unknown_runs(store, server.url, len(points) * REPEAT, monkeypatch)
    assert not await asyncio.to_thread(effect_rows, pg_schema), "no effect before the decisions"
    rng = random.Random(20261125)
    jobs = [(run_id, points[i % len(points)]) for i, run_id in enumerate(ids)]
    half = len(jobs) // 2
    for wave in (jobs[:half], jobs[half:]):  # each point five times a wave, all at once
        await _kill_resolvers(store, pg_schema, wave, rng)
    # Killed anywhere after its decision, a run is left interrupted, never waiting with
    # nothing to decide: a starting runtime (as `agentrt worker` does) takes each up.
    for run_id in ids:
        run = await store.get_run(run_id)
        assert run is not None and (run.status == "running" or run.finished), run
    async with Runtime(store) as rt:
        await asyncio.gather(*(rt.wait(run_id) for run_id in ids))
    outcome = await _check(store, pg_schema, ids)
    by_point: dict[str, Counter[str]] = {p: Counter() for p in points}
    for i, run_id in enumerate(ids):
        by_point[points[i % len(points)]][outcome[run_id]] += 1
    # Killed before its effect or after it, a claimed re-execution is unknown again; a
    # recorded result stays recorded.
    assert by_point["claimed"] == Counter(unknown=REPEAT), by_point
    assert by_point["effect"] == Counter(unknown=REPEAT), by_point
    assert by_point["recorded"] == Counter(recorded=REPEAT), by_point
    rows = await asyncio.to_thread(effect_rows, pg_schema)
    assert sum(_rows_of(rows, r) for r in ids[2 :: len(points)]) == REPEAT  # "effect" point

    # `runs show` tells the attempts apart.
    claimed = ids[1]  # killed at "claimed": attempt 2 recorded, then unknown again
    run = await store.get_run(claimed)
    assert run is not None
    tree = render_run_tree(run, await store.read_events(claimed), Style())
    assert "attempt 2 as decided (rerun)" in tree and "unknown" in tree, tree

    # A person decides each unknown step again; the runs end without another effect.
    async with Runtime(store, resume_interrupted=False) as rt:
        unknown = [run_id for run_id, how in outcome.items() if how == "unknown"]
        decided = await asyncio.gather(
            *(rt.resolve(r, STEP, "output", output="checked by hand") for r in unknown)
        )
        assert {result.status for result in decided} == {"succeeded"}, decided
    assert await asyncio.to_thread(effect_rows, pg_schema) == rows


# --- races between decisions, resumes and takeovers ------------------------------


def _sleep_syscalls() -> frozenset[int]:
    # nanosleep and clock_nanosleep: how SQLite's busy handler waits for a lock.
    return (
        frozenset({101, 115})
        if platform.machine() in ("aarch64", "arm64")
        else frozenset({35, 230})
    )


def _waiting_threads(pid: int) -> int:
    """Threads of ``pid`` sleeping in the kernel (SQLite waiting for the write lock)."""
    sleeping = 0
    for path in glob.glob(f"/proc/{pid}/task/*/syscall"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(Path(path).read_text().split()[0]) in _sleep_syscalls():
                sleeping += 1
    return sleeping


@contextlib.contextmanager
def _write_lock(db: Path) -> Any:
    """Hold SQLite's write lock on ``db``; readers go on, writers wait for it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


async def _together(
    store: SqliteStore, *contenders: Callable[[Runtime], Awaitable[Any]]
) -> list[Any]:
    """Run each contender on its own runtime and store connection, all having read the
    run before any can write: the stale read every takeover and decision must survive."""
    peers = [await SqliteStore.open(_db(store)) for _ in contenders]
    runtimes = [Runtime(peer, resume_interrupted=False) for peer in peers]
    try:
        for rt in runtimes:
            await rt.start()
        with _write_lock(_db(store)) as lock:
            tasks = [asyncio.create_task(c(rt)) for c, rt in zip(contenders, runtimes, strict=True)]

            async def all_wait() -> bool:
                return _waiting_threads(os.getpid()) >= len(contenders)

            await _until(all_wait, "every contender waits for the write lock", within_s=20)
            lock.execute("ROLLBACK")
        return list(await asyncio.gather(*tasks, return_exceptions=True))
    finally:
        for rt in runtimes:
            await rt.close()
        for peer in peers:
            await peer.close()


def _refused(outcome: Any) -> bool:
    """A contender that lost: a clear usage or conflict error, before any effect."""
    from agentrt.errors import UsageError

    return isinstance(outcome, UsageError)


def _cli_refused(code: int, err: str) -> bool:
    return code == 2 and err.startswith("error: ") and "Traceback" not in err


async def test_two_resolve_rerun_at_once_perform_once(
    server: ModelTestServer, store: SqliteStore, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.latency_s = 0.0
    ids = await _unknown_runs(store, server.url, REPEAT + NATURAL, monkeypatch)
    forced, natural = ids[:REPEAT], ids[REPEAT:]
    for run_id in forced:
        rerun = lambda rt, r=run_id: rt.resolve(r, STEP, "rerun")  # noqa: E731
        outcomes = await _together(store, rerun, rerun)
        assert sorted(_refused(o) for o in outcomes) == [False, True], outcomes
        assert [o.status for o in outcomes if not _refused(o)] == ["succeeded"]
    procs = []  # two CLI processes per run, started at once
    for run_id in natural:
        for _ in range(2):
            procs.append(await _cli(store, "resolve", run_id, str(STEP), "--rerun", "--json"))
    finished = [await _finish(p) for p in procs]
    for first, second in zip(finished[::2], finished[1::2], strict=True):
        codes = sorted((first[0], second[0]))
        assert codes == [0, 2], (first, second)
        loser = first if first[0] == 2 else second
        assert _cli_refused(loser[0], loser[2]), loser
    outcome = await _check(store, pg_schema, ids)
    assert set(outcome.values()) == {"recorded"}
    for run_id in ids:
        events = await store.read_events(run_id)
        assert sum(e.type == ev.TOOL_DECISION for e in events) == 1, "one decision recorded"


async def test_resolve_racing_resume_performs_at_most_once(
    server: ModelTestServer, store: SqliteStore, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.latency_s = 0.0
    ids = await _unknown_runs(store, server.url, REPEAT + NATURAL, monkeypatch)
    forced, natural = ids[:REPEAT], ids[REPEAT:]
    for run_id in forced:
        outcomes = await _together(
            store,
            lambda rt, r=run_id: rt.resolve(r, STEP, "rerun"),
            lambda rt, r=run_id: rt.resume(r),
        )
        ran = sorted(o.status for o in outcomes if not _refused(o))
        assert ran in (["succeeded"], ["waiting"], ["succeeded", "waiting"]), outcomes
    procs = []
    for run_id in natural:
        procs.append(await _cli(store, "resolve", run_id, str(STEP), "--rerun", "--json"))
        procs.append(await _cli(store, "resume", run_id, "--json"))
    for code, out, err in [await _finish(p) for p in procs]:
        assert code in (0, 3) or _cli_refused(code, err), (code, out, err)
    await _check(store, pg_schema, ids)


async def test_two_resumes_at_once_after_a_killed_resolve_perform_once(
    server: ModelTestServer, store: SqliteStore, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.latency_s = 0.0
    ids = await _unknown_runs(store, server.url, REPEAT + NATURAL, monkeypatch)
    # Each resolver is killed once its decision is recorded.
    await _kill_resolvers(store, pg_schema, [(r, "decided") for r in ids], random.Random(7))
    # Decided, then left by a dead process: not waiting with nothing to decide.
    for run_id in ids:
        run = await store.get_run(run_id)
        assert run is not None and run.status == "running", run
    forced, natural = ids[:REPEAT], ids[REPEAT:]
    for run_id in forced:
        resume = lambda rt, r=run_id: rt.resume(r)  # noqa: E731
        outcomes = await _together(store, resume, resume)
        # One performs, the other is refused; or the attempt was claimed by the killed
        # resolver and both find the step unknown again.
        ran = [o.status for o in outcomes if not _refused(o)]
        assert ran in (["succeeded"], ["waiting"], ["waiting", "waiting"]), outcomes
    procs = [await _cli(store, "resume", r, "--json") for r in natural for _ in range(2)]
    finished = [await _finish(p) for p in procs]
    for first, second in zip(finished[::2], finished[1::2], strict=True):
        assert sorted((first[0], second[0])) in ([0, 2], [2, 3], [3, 3]), (first, second)
        assert all(c in (0, 3) or _cli_refused(c, e) for c, _, e in (first, second))
    await _check(store, pg_schema, ids)
