"""The scripted model server every workload talks to, in a child process or a thread.

In ``process`` mode (the default) the :class:`~agentrt.models.testserver.ModelTestServer`
runs in a child process, so its CPU time is not spent on the measured
process's core or GIL. The parent steers it over the child's stdin with one
command per line: ``latency SECONDS``, ``delay SECONDS`` (the next completion only),
``reset``, ``served``, ``quit``.
In ``thread`` mode it runs on a thread of the measured process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

from agentrt.models.testserver import ModelTestServer

__all__ = ["ServerMode", "TestServer", "main"]

ServerMode = Literal["process", "thread"]

_ROOT = Path(__file__).resolve().parent.parent


class TestServer:
    """A running scripted model server with the controls the workloads need.

    Args:
        mode: ``process`` (a child process) or ``thread`` (a thread of this process).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, mode: ServerMode = "process") -> None:
        self.mode = mode
        self._proc: subprocess.Popen[str] | None = None
        self._server: ModelTestServer | None = None
        if mode == "process":
            env = {**os.environ, "PYTHONPATH": _pythonpath()}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bench.server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=_ROOT,
                env=env,
            )
            self.url = self._read()
        else:
            from bench.common import script

            self._server = ModelTestServer(script())
            self.url = self._server.start_in_thread()

    def _read(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the model server process exited")
        return line.strip()

    def _command(self, text: str) -> str:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()
        return self._read()

    def set_latency(self, seconds: float) -> None:
        """Set the delay the server adds before every completion."""
        if self._server is not None:
            self._server.latency_s = seconds
        else:
            self._command(f"latency {seconds}")

    def delay_next(self, seconds: float) -> None:
        """Delay the next completion by ``seconds`` more than the latency."""
        if self._server is not None:
            self._server.inject_delay(seconds)
        else:
            self._command(f"delay {seconds}")

    def reset(self) -> None:
        """Clear the server's request log and its count of completions served."""
        if self._server is not None:
            self._server.reset_log()
        else:
            self._command("reset")

    def served(self) -> int:
        """Completions served since the last :meth:`reset`."""
        if self._server is not None:
            return self._server.completions_served
        return int(self._command("served"))

    def close(self) -> None:
        """Stop the server (and its process). Idempotent."""
        if self._server is not None:
            self._server.stop_thread()
            self._server = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write("quit\n")
                    proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pythonpath() -> str:
    current = os.environ.get("PYTHONPATH")
    return str(_ROOT) if not current else f"{_ROOT}{os.pathsep}{current}"


def main() -> None:
    """Child process: serve the script and obey commands read from stdin."""
    from bench.common import script

    server = ModelTestServer(script())
    print(server.start_in_thread(), flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "latency":
                server.latency_s = float(argument)
                reply = "ok"
            elif command == "delay":
                server.inject_delay(float(argument))
                reply = "ok"
            elif command == "reset":
                server.reset_log()
                reply = "ok"
            elif command == "served":
                reply = str(server.completions_served)
            elif command == "quit":
                break
            else:
                reply = f"error: unknown command {command!r}"
            print(reply, flush=True)
    finally:
        server.stop_thread()


if __name__ == "__main__":
    main()
