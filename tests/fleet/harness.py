"""A fleet of real ``agentrt worker`` processes on one store, and the checks every
fleet test makes of what they recorded.

Workers are started as the README says (``agentrt worker --store URL``) with a
short lease, so that a takeover happens within seconds. Runs are queued by the
test through the public API; the tool ``pg_charge`` (``tests/pg_effects.py``)
makes each call's effect a row in PostgreSQL keyed by its idempotency key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentrt import Runtime
from agentrt.engine import events as ev
from agentrt.state import Event, RunRecord, Store
from agentrt.state.audit import verify_audit
from tests.conftest import call, resources, rules

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "agentrt.cli.main"]

# Model step 1 asks for pg_charge, tool step 2 performs it, model step 3 answers.
SCRIPT = rules(
    {"tool_calls": [call("pg_charge", amount=5)]}, {"content": "paid: {last_tool_result}"}
)
AGENT = {"loop": {"parallel_tool_calls": False, "retry": {"initial_backoff_s": 0.01}}}
RESULTS = (ev.MODEL_RESULT, ev.TOOL_RESULT, ev.TOOL_UNKNOWN)


@dataclass
class WorkerProcess:
    """One ``agentrt worker`` process and the file its stderr goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    async def serving(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until the worker says it serves (its store opened, its loop running)."""
        deadline = time.monotonic() + timeout
        while " serving;" not in self.said():
            assert self.proc.poll() is None, f"{self.name} exited: {self.said()}"
            assert time.monotonic() < deadline, f"{self.name} did not start: {self.said()}"
            await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit (SIGKILL past ``timeout``)."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass
class Fleet:
    """Workers on the store at ``url``; each test's own ``tmp`` holds their logs."""

    url: str
    tmp: Path
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    @classmethod
    def on(cls, url: str, tmp: Path, *, lease_ttl_s: float = 2.0, **env: str) -> Fleet:
        """A fleet on ``url`` whose workers hold leases for ``lease_ttl_s``."""
        full = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AGENTRT_STORE": url,
            "AGENTRT_LEASE_TTL": str(lease_ttl_s),
            "NO_COLOR": "1",
            **env,
        }
        return cls(url, tmp, full)

    def start(self, name: str, *, concurrency: int = 100, grace_s: float = 10.0) -> WorkerProcess:
        """Start ``agentrt worker --name NAME``."""
        log = self.tmp / f"{name}.err"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [*CMD, "worker", "--name", name, "--concurrency", str(concurrency),
                 "--poll", "0.2", "--grace", str(grace_s)],
                env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        worker = WorkerProcess(name, proc, log)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        """Stop every worker still running (SIGKILL if a drain does not end)."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.stop(timeout=15)


async def apply_and_queue(url: str, model_url: str, count: int, *, prefix: str = "q") -> list[str]:
    """Apply the test agent and queue ``count`` runs of it; their ids."""
    async with Runtime(url, resume_interrupted=False, notice_cancels=False) as rt:
        await rt.apply(resources(model_url, tools=["pg_charge"], agent=AGENT))
        runs = [await rt.submit("bot", f"{prefix}{i}", start=False) for i in range(count)]
    return [run.id for run in runs]


async def settled(
    store: Store,
    run_ids: Iterable[str],
    *,
    timeout: float = 120.0,  # noqa: ASYNC109
) -> dict[str, RunRecord]:
    """Wait until every run has ended or waits for a person; the runs then."""
    ids = list(run_ids)
    deadline = time.monotonic() + timeout
    while True:
        runs = {i: await store.get_run(i) for i in ids}
        open_ = [
            i
            for i, r in runs.items()
            if r is None or not (r.finished or r.status.startswith("waiting"))
        ]
        if not open_:
            return {i: r for i, r in runs.items() if r is not None}
        if time.monotonic() > deadline:
            detail = {i: (runs[i].status, runs[i].lease_owner) for i in open_[:5] if runs[i]}
            raise AssertionError(f"{len(open_)} runs still open after {timeout}s: {detail}")
        await asyncio.sleep(0.25)


def log_problems(run_id: str, events: list[Event]) -> list[str]:
    """What is wrong with one run's log: a gap or duplicate in its sequence, a step
    with two results, a tool effect started twice."""
    problems = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{run_id}: sequence {seqs} has a gap or a duplicate")
    results = Counter(e.step for e in events if e.type in RESULTS)
    problems += [f"{run_id}: step {s} has {n} results" for s, n in results.items() if n > 1]
    calls = Counter(e.step for e in events if e.type == ev.TOOL_CALL)
    problems += [f"{run_id}: tool step {s} started {n} times" for s, n in calls.items() if n > 1]
    return problems


async def check_exactly_once(
    store: Store, runs: dict[str, RunRecord], effects: Counter[str]
) -> dict[str, int]:
    """Assert what every fleet test holds, and count the runs by outcome.

    Every run succeeded, or waits with its one tool step ``unknown``; every log is
    gap-free with one result per step; no idempotency key has two effects; a
    succeeded run's charge happened exactly once, an unknown one at most once. The
    audit log has one record of each run's creation and of each tool call attempt,
    whoever executed it, and every tenant's chain verifies.
    """
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for namespace in sorted({run.namespace for run in runs.values()}):
        verdict = await verify_audit(store, namespace)
        if not verdict.ok:
            problems.append(verdict.message())
    for run_id, run in runs.items():
        events = await store.read_events(run_id)
        problems += log_problems(run_id, events)
        problems += await _audit_problems(store, run, events)
        charged = sum(n for key, n in effects.items() if key.startswith(f"{run_id}:"))
        unknown = [e for e in events if e.type == ev.TOOL_UNKNOWN]
        if run.status == "succeeded":
            outcomes["succeeded"] += 1
            if charged != 1:
                problems.append(f"{run_id}: succeeded with {charged} charges")
        elif run.status == "waiting" and len(unknown) == 1:
            outcomes["unknown"] += 1
            if charged > 1:
                problems.append(f"{run_id}: an unknown call had {charged} effects")
        else:
            problems.append(f"{run_id}: ended {run.status} ({run.reason})")
    duplicated = [k for k, n in effects.items() if n > 1]
    if duplicated:
        problems.append(f"keys with two effects: {duplicated[:5]}")
    assert not problems, "\n".join(problems[:20])
    return dict(outcomes)


async def _audit_problems(store: Store, run: RunRecord, events: list[Event]) -> list[str]:
    """What is wrong with the run's audit records: each run.created and tool.call event
    has one, and none names another event."""
    audited = await store.list_audit(run.namespace, run_id=run.id, limit=10_000)
    recorded = [r.event_seq for r in audited]
    expected = [e.seq for e in events if e.type in (ev.RUN_CREATED, ev.TOOL_CALL)]
    if recorded != expected:
        return [f"{run.id}: audit records of events {recorded}, its log has {expected}"]
    return []


def owners_after_start(events: list[Event]) -> list[str]:
    """The owners that started executing the run, in order (``run.started`` events)."""
    return [str(e.data.get("owner")) for e in events if e.type == ev.RUN_STARTED]


def owned_by(run: RunRecord, worker: WorkerProcess) -> bool:
    """Whether ``worker``'s process holds the run's lease (owner ids are host:pid:nonce)."""
    return run.lease_owner is not None and run.lease_owner.split(":")[1:2] == [str(worker.pid)]


async def holding_runs(
    store: Store,
    worker: WorkerProcess,
    *,
    timeout: float = 20.0,  # noqa: ASYNC109
) -> list[str]:
    """Wait until ``worker`` holds the lease of at least one run; those runs."""
    deadline = time.monotonic() + timeout
    while True:
        held = [
            r.id
            for r in await store.list_runs(statuses=["running"], limit=1000)
            if owned_by(r, worker)
        ]
        if held:
            return held
        assert time.monotonic() < deadline, f"{worker.name} never held a run"
        await asyncio.sleep(0.05)
