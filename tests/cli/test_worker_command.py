"""`agentrt worker` as an operator runs it: runs queued with `agentrt run --queue` are
executed, the health checks answer, and SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentrt.models.testserver import ModelTestServer
from tests.conftest import rules

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "agentrt.cli.main"]
SPEC = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {{name: m}}
spec: {{provider: openai, base_url: "{url}", max_retries: 0}}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {{name: bot}}
spec: {{model: m, instructions: "Be brief."}}
"""


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    srv = ModelTestServer(rules({"content": "served"}))
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


def _agentrt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _status(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_worker_serves_the_queue_answers_checks_and_drains_on_sigterm(
    tmp_path: Path, server: ModelTestServer
) -> None:
    env = {**os.environ, "AGENTRT_STORE": str(tmp_path / "fleet.db"), "PYTHONPATH": str(ROOT)}
    (tmp_path / "bot.yaml").write_text(SPEC.format(url=server.url))
    assert _agentrt(env, "apply", "-f", str(tmp_path / "bot.yaml")).returncode == 0
    queued = [_agentrt(env, "run", "bot", f"q{i}", "--queue") for i in range(3)]
    assert all(q.returncode == 0 for q in queued), [q.stderr for q in queued]
    ids = [q.stdout.strip() for q in queued]
    assert all(re.fullmatch(r"run_[0-9a-f]+", i) for i in ids), ids
    log = tmp_path / "worker.err"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [
                *CMD,
                "worker",
                "--name",
                "w1",
                "--health-port",
                "0",
                "--concurrency",
                "2",
                "--grace",
                "1",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _until(lambda: "health checks on port" in log.read_text())
        port = int(re.search(r"health checks on port (\d+)", log.read_text()).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"

        def all_done() -> bool:
            listed = json.loads(_agentrt(env, "runs", "list", "--json").stdout)
            return {r["id"]: r["status"] for r in listed if r["id"] in ids} == dict.fromkeys(
                ids, "succeeded"
            )

        _until(all_done)
        code, body = _status(f"{base}/readyz")
        assert code == 200 and body["phase"] == "serving" and body["concurrency"] == 2, body
        assert _status(f"{base}/healthz")[0] == 200
        # A run whose model answers in a minute is in flight when SIGTERM comes.
        server.inject_delay(60)
        slow = _agentrt(env, "run", "bot", "slow", "--queue").stdout.strip()
        _until(lambda: len(server.requests) >= 4)
        # The roster shows the worker, live, with the run it holds.
        listed = json.loads(_agentrt(env, "workers", "--json").stdout)
        assert [(w["name"], w["phase"], w["runs"], w["pid"]) for w in listed] == [
            ("w1", "serving", [slow], worker.pid)
        ], listed
        table = _agentrt(env, "workers").stdout
        assert "w1" in table and "1/2" in table and slow in table, table
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(timeout=20) == 0, log.read_text()
        took = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    said = log.read_text()
    assert "draining" in said and "giving back 1 unfinished run" in said, said
    assert "Traceback" not in said, said
    assert took < 10, f"exited {took:.1f}s after SIGTERM with a grace of 1s"
    # A worker that stopped leaves the roster.
    assert json.loads(_agentrt(env, "workers", "--json").stdout) == []
    assert "no live workers" in _agentrt(env, "workers").stdout
    shown = json.loads(_agentrt(env, "runs", "show", slow, "--json").stdout)
    assert shown["run"]["status"] == "running" and shown["run"]["lease_owner"] is None, shown


def test_worker_rejects_a_bad_concurrency_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTRT_STORE": str(tmp_path / "x.db"), "PYTHONPATH": str(ROOT)}
    done = _agentrt(env, "worker", "--concurrency", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --concurrency 0: give at least 1"


def test_a_worker_waits_for_a_database_server_that_does_not_answer_yet(
    tmp_path: Path,
) -> None:
    # A port nothing listens on: the database is not up yet (it starts with the fleet).
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=1"
    env = {**os.environ, "AGENTRT_STORE": url, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "worker.err"
    with log.open("wb") as err:
        proc = subprocess.Popen([*CMD, "worker"], env=env, stderr=err, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count("trying again") < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    said = log.read_text()
    assert "cannot be reached" in said and "Traceback" not in said


def test_a_worker_on_a_local_store_it_cannot_open_fails_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTRT_STORE": str(tmp_path), "PYTHONPATH": str(ROOT)}  # a directory
    done = subprocess.run([*CMD, "worker"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode not in (0, None) and "trying again" not in done.stderr, done.stderr


def test_idle_workers_on_one_sqlite_file_do_not_wake_each_other(tmp_path: Path) -> None:
    from inotify_simple import INotify, flags

    db = tmp_path / "s.db"
    env = {**os.environ, "AGENTRT_STORE": f"sqlite:///{db}", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / f"w{i}.err" for i in range(2)]
    procs = []
    for log in logs:
        with log.open("wb") as err:
            procs.append(subprocess.Popen([*CMD, "worker"], env=env, stderr=err, cwd=ROOT))
    try:
        deadline = time.monotonic() + 30
        while not all("serving" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.1)
        # Each store tells the others of its writes to runs through this folder; with
        # nothing queued, nothing should be told (a claim that finds nothing wrote none).
        watch = INotify()
        watch.add_watch(str(db.with_name(db.name + "-notify")), flags.MODIFY)
        told = 0
        end = time.monotonic() + 3.0
        while (left := end - time.monotonic()) > 0:
            told += len(watch.read(timeout=int(left * 1000) + 1))
        watch.close()
        assert told <= 2, f"idle workers told each other of {told} writes in 3 s"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=20) == 0
