"""``agentrt serve`` processes for the server benchmarks, started the way an operator does.

A store is a SQLite file or a fresh schema of a PostgreSQL database (dropped
after); its key is made with ``agentrt keys create``; each ``agentrt serve
--host 127.0.0.1 --port P --store URL`` is ready once its ``/readyz`` answers
200; its CPU time is read from ``/proc``. With ``AGENTRT_BENCH_PROFILE=PREFIX``
each runs under ``cProfile``, writing ``PREFIX-PORT.prof`` when it stops. The
resources the bench applies name ``bench.common:add``, so the servers allow the
``bench`` module, and their per-key rate limit is lifted: the bench is one key
sending as fast as it can.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.agentrt_bench import AGENT, postgres_base, postgres_unavailable, resource_docs

__all__ = [
    "TENANT",
    "Serve",
    "apply_resources",
    "auth",
    "cpu_s",
    "make_key",
    "start_replicas",
    "store_of",
    "submit",
    "why",
]

TENANT = "bench"
"""The tenant of the bench's key."""

_ROOT = Path(__file__).resolve().parent.parent
_CMD = [sys.executable, "-m", "agentrt.cli.main"]
_TICK = os.sysconf("SC_CLK_TCK")
_RATE = "1000000"  # requests per second per key: no limit for the bench's one key


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _env() -> dict[str, str]:
    current = os.environ.get("PYTHONPATH")
    path = str(_ROOT) if not current else f"{_ROOT}{os.pathsep}{current}"
    return {**os.environ, "PYTHONPATH": path}


@dataclass
class Serve:
    """One ``agentrt serve`` process: where it listens, and its stderr."""

    base: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds the process has used so far."""
        return cpu_s(self.proc.pid)

    def said(self, last: int = 2000) -> str:
        """The end of what it wrote to stderr."""
        return self.log.read_text(errors="replace")[-last:]

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 30 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _launch(store_url: str, tmp: Path, extra: tuple[str, ...]) -> Serve:
    port = _free_port()
    log = tmp / f"serve-{port}.log"
    profile = os.environ.get("AGENTRT_BENCH_PROFILE")
    prof = ["-m", "cProfile", "-o", f"{profile}-{port}.prof"] if profile else []
    command = [sys.executable, *prof, *_CMD[1:], "serve", "--host", "127.0.0.1",
               "--port", str(port), "--store", store_url,
               "--allow-module", "bench", "--rate", _RATE, *extra]  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(
            command, env=_env(), cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=err
        )
    return Serve(f"http://127.0.0.1:{port}", proc, log)


def _until_ready(serve: Serve, deadline: float) -> None:
    with httpx.Client(timeout=2.0) as http:
        while True:
            if serve.proc.poll() is not None:
                raise RuntimeError(f"agentrt serve exited {serve.proc.returncode}: {serve.said()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{serve.base}/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                serve.stop()
                raise RuntimeError(f"agentrt serve was not ready within 60 s: {serve.said()}")
            time.sleep(0.05)


def start_replicas(store_url: str, tmp: Path, count: int, *extra: str) -> list[Serve]:
    """``count`` serve processes over one store, started together; each ready."""
    serves = [_launch(store_url, tmp, extra) for _ in range(count)]
    deadline = time.monotonic() + 60
    try:
        for serve in serves:
            _until_ready(serve, deadline)
    except BaseException:
        for serve in serves:
            serve.stop()
        raise
    return serves


def make_key(store_url: str, tenant: str, role: str) -> str:
    """A new API key of ``tenant`` with ``role``: ``agentrt keys create`` on the store
    (which also makes the store's schema, before any server starts)."""
    done = subprocess.run(
        [*_CMD, "keys", "create", "--tenant", tenant, "--role", role, "--name", "bench",
         "--store", store_url, "--json"],
        env=_env(), cwd=_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"agentrt keys create failed: {done.stderr.strip()}")
    key: str = json.loads(done.stdout)["key"]
    return key


def _drop_schema(base: str, schema: str) -> None:
    import psycopg

    from agentrt.state._pg_url import parse_url

    with psycopg.connect(parse_url(base)[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def store_of(kind: str, tmp: Path) -> Iterator[str]:
    """A store URL nobody used: a new SQLite file in ``tmp``, or (``postgresql``) a
    fresh schema of the bench's PostgreSQL, dropped with its contents on exit."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'api-{secrets.token_hex(4)}.db'}"
        return
    base = postgres_base()
    reason = postgres_unavailable(base)
    if reason is not None:
        raise RuntimeError(reason)
    schema = f"agentrt_bench_{secrets.token_hex(4)}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        _drop_schema(base, schema)


def auth(key: str) -> dict[str, str]:
    """The request headers of ``key``."""
    return {"Authorization": f"Bearer {key}"}


async def apply_resources(http: httpx.AsyncClient, serve: Serve, key: str, model_url: str) -> None:
    """The Model, Tool and Agent of the bench, through ``POST /v1/resources``."""
    reply = await http.post(
        f"{serve.base}/v1/resources", json=resource_docs(model_url), headers=auth(key)
    )
    if reply.status_code != 200:
        raise RuntimeError(f"apply: {reply.status_code} {reply.text}")


async def submit(
    http: httpx.AsyncClient, base: str, key: str, text: str, idem: str, *, wait: bool = False
) -> str:
    """``POST /v1/queries`` of ``text`` with idempotency key ``idem``; the run's id."""
    body = {"target": AGENT, "input": text, "idempotency_key": idem, "wait": wait}
    reply = await http.post(f"{base}/v1/queries", json=body, headers=auth(key))
    if reply.status_code not in (200, 202):
        raise RuntimeError(f"submit: {reply.status_code} {reply.text}")
    run_id: str = reply.json()["run"]["id"]
    return run_id


def why(exc: BaseException) -> str:
    """An error in one line, with its type when its text says little (a timeout)."""
    text = str(exc).strip()
    return text if isinstance(exc, RuntimeError) and text else f"{type(exc).__name__}: {text}"
