"""A PostgreSQL cluster of a test's own, in a temporary directory, for tests that stop
and restart the database (never the machine's shared server).

Made with Debian's ``initdb`` and ``pg_ctl`` (package ``postgresql``, installed by
the set-up). PostgreSQL refuses to run as root, so as root the cluster is made
and run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PgCluster", "own_cluster"]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A running cluster: its data directory, port, and how to stop and start it."""

    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The URL of its database ``postgres`` (add ``&schema=...`` as needed)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=3"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        """Stop it at once (``-m fast``: connections are cut, as in a database restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


@contextlib.contextmanager
def own_cluster() -> Iterator[PgCluster]:
    """A fresh cluster, started; stopped and removed on exit.

    Its directory (data and log) is a temporary one of its own, not under pytest's:
    as root the cluster runs as ``postgres``, which must reach it, and pytest keeps
    its temporary tree closed to other users (each process of a parallel run
    closes it again as it starts).
    """
    bindir = _bindir()
    if bindir is None or not shutil.which("runuser"):
        pytest.skip(
            "SKIPPED LOUDLY: this test needs PostgreSQL's server programs "
            "(Debian package postgresql: initdb, pg_ctl); `make test` installs them"
        )
    root = Path(tempfile.mkdtemp(prefix="agentrt-pg-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = PgCluster(bindir, root, _free_port())
        cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                     "--no-sync", "--no-instructions")  # fmt: skip
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(RuntimeError):
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
