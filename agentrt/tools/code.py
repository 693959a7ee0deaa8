"""The ``code`` tool kind: model-written Python or shell, run in a sandbox.

Each call writes the code to ``main.py`` (or ``main.sh``) in the run's scratch
directory and runs it there, in a fresh sandbox taken from a warm pool, with
the Tool's permissions and limits. Files written by one call stay for the next
calls of the same run: the scratch directory is the run's workspace, copied
into the sandbox's own volume for the call and back, normalised, after it
(:mod:`agentrt.tools.sandbox.pool`). A call that writes past its disk quota
ends ``disk_exceeded`` and what it wrote is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from agentrt.errors import ToolError
from agentrt.models.base import ToolDef
from agentrt.settings import default_sandbox_dir
from agentrt.spec.resources import CodeToolSpec, ToolSpec
from agentrt.tools.base import ToolContext, ToolResult
from agentrt.tools.sandbox.base import (
    ExecResult,
    Prestart,
    Sandbox,
    SandboxLimits,
    SandboxPolicy,
)
from agentrt.tools.sandbox.pool import Collected, PooledSandbox, SandboxPool
from agentrt.tools.sandbox.sandboxes import Sandboxes
from agentrt.tools.sandbox.volume import DiskQuota

__all__ = ["CodeTool"]

log = logging.getLogger(__name__)

DEFAULT_WALL_S = 30.0
TRACE_STDERR_CHARS = 4096  # the event log keeps a bounded stderr; the model sees the capped one
QUOTA_POLL_S = 0.25  # how often a measured (not kernel-enforced) disk quota is checked
_PYTHON = ("python3", "-s", "-E")
_PROGRAMS = {
    "python": ("main.py", [*_PYTHON, "main.py"]),
    "shell": ("main.sh", ["sh", "main.sh"]),
}
# Python started ahead of the call (where the backend can), then told to run
# main.py as `python3 -s -E main.py` would: same flags, argv, sys.path[0],
# __main__ globals, and tracebacks without this wrapper's own frame.
_PYTHON_READY = """\
import os, sys
os.write(1, b"r")  # loaded and ready: the sandbox is handed out from here on
if os.read(3, 16) != b"go\\n":
    sys.exit(0)
os.close(3)
sys.argv[:] = ["main.py"]
sys.path[0] = os.getcwd()
def _hook(kind, value, tb, _show=sys.excepthook):
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    _show(kind, value.with_traceback(tb), tb)
sys.excepthook = _hook
__file__ = os.path.abspath("main.py")
with open("main.py", "rb") as _file:
    _code = compile(_file.read(), __file__, "exec")
del os, sys, _hook, _file
exec(globals().pop("_code"), globals())
"""
PYTHON_PRESTART = Prestart(tuple(_PROGRAMS["python"][1]), (*_PYTHON, "-c", _PYTHON_READY))
_PRESTART = {"python": PYTHON_PRESTART}


def _write_program(path: Path, code: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A sandbox may have left a symlink (or a directory) under this name: the
    # runtime must never write through it onto the host.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(code)


class CodeTool:
    """A Tool of kind ``code``: one tool taking ``{code: string}``.

    Args:
        name: the Tool resource's name (the tool's name).
        spec: the Tool's spec (``code``, ``permissions``, ``limits``, ``timeout_s``).
        sandboxes: the Runtime's sandboxes, shared by its code tools; by
            default the tool has its own, over ``workdir``.
        environ: where the names in ``permissions.env`` are looked up (the
            settings' environment); by default none is passed in.
        workdir: the sandbox backends' directory when the tool has its own
            sandboxes (default: the user cache's ``agentrt/sandboxes``).
        pool_size: ready sandboxes kept warm for this tool (default: ``code.pool_size``).
    """

    dynamic = False

    def __init__(
        self,
        name: str,
        spec: ToolSpec,
        *,
        sandboxes: Sandboxes | None = None,
        environ: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        pool_size: int | None = None,
    ) -> None:
        if sandboxes is not None and workdir is not None and workdir != sandboxes.workdir:
            raise ValueError("give a CodeTool its sandboxes or a workdir, not both")
        self.name = name
        self.spec = spec
        self.code = spec.code or CodeToolSpec()
        self._own_sandboxes = sandboxes is None
        self.sandboxes = sandboxes or Sandboxes(workdir or default_sandbox_dir())
        self.workdir = self.sandboxes.workdir
        self._environ: Mapping[str, str] = environ or {}
        self.pool_size = self.code.pool_size if pool_size is None else pool_size
        limits = spec.limits
        self.limits = SandboxLimits(
            wall_s=spec.timeout_s or DEFAULT_WALL_S,
            cpu_s=limits.cpu_s,
            memory_mb=limits.memory_mb,
            pids=limits.pids,
            output_bytes=limits.output_bytes,
            disk_mb=limits.disk_mb,
        )
        self.quota = DiskQuota(
            call_bytes=limits.disk_mb << 20,
            call_entries=limits.disk_files,
            run_bytes=limits.run_disk_mb << 20,
            run_entries=limits.run_disk_files,
        )
        network = spec.permissions.network
        self._network: Literal["none"] | tuple[str, ...] = (
            "none" if isinstance(network, str) else tuple(network)
        )
        language = "Python" if self.code.language == "python" else "POSIX shell"
        self._definition = ToolDef(
            name,
            spec.description
            or f"Run {language} code in a sandbox and return what it prints. The working "
            "directory keeps its files for later calls in this conversation.",
            {
                "type": "object",
                "properties": {"code": {"type": "string", "description": f"{language} code"}},
                "required": ["code"],
                "additionalProperties": False,
            },
        )
        self._pool: SandboxPool | None = None
        self._pool_lock = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None
        self._active: dict[str, set[Sandbox]] = {}  # run id -> its sandboxes running now

    async def definitions(self) -> list[ToolDef]:
        """The one tool; also starts warming sandboxes while the model thinks."""
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm())
        return [self._definition]

    async def _warm(self) -> None:
        try:
            (await self._ready_pool()).warm()
        except Exception as exc:  # call() raises it again where it can be reported
            log.debug("tool %s: cannot warm sandboxes yet: %s", self.name, exc)

    def _policy(self) -> SandboxPolicy:
        environ = self._environ
        env = {name: environ[name] for name in self.spec.permissions.env if name in environ}
        return SandboxPolicy(
            scratch=self.workdir / "scratch",  # replaced by each pooled sandbox's own
            network=self._network,
            env=env,
            read_paths=tuple(self.spec.permissions.read_paths),
        )

    async def _ready_pool(self) -> SandboxPool:
        async with self._pool_lock:
            if self._pool is None:
                backend = await self.sandboxes.choose(
                    self.code.sandbox,
                    allow_unsafe=self.code.allow_unsafe,
                    policy_needs_network_allowlist=self._network != "none",
                )
                self._pool = SandboxPool(
                    backend,
                    self._policy(),
                    self.limits,
                    workdir=self.workdir,
                    size=self.pool_size,
                    prestart=_PRESTART.get(self.code.language),
                    user=backend.user,
                )
            return self._pool

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run ``arguments["code"]`` in a sandbox; a failure is an error result, not a raise."""
        code = arguments.get("code")
        if not isinstance(code, str) or set(arguments) - {"code"}:
            raise ToolError(f"{self.name} takes one argument: `code` (a string)")
        filename, argv = _PROGRAMS[self.code.language]
        pooled = await (await self._ready_pool()).acquire()
        active = self._active.setdefault(ctx.run_id, set())
        active.add(pooled.sandbox)
        try:
            result, collected = await self._run(pooled, ctx.scratch, filename, code, argv)
        finally:
            active.discard(pooled.sandbox)
            if not active:
                self._active.pop(ctx.run_id, None)
            await pooled.release()
        return self._result(result, collected)

    async def pause_run(self, run_id: str) -> int:
        """Freeze the sandboxes running calls of ``run_id``; returns how many."""
        sandboxes = list(self._active.get(run_id, ()))
        for sandbox in sandboxes:
            await sandbox.pause()
        return len(sandboxes)

    async def resume_run(self, run_id: str) -> int:
        """Thaw the sandboxes of ``run_id`` frozen by :meth:`pause_run`."""
        sandboxes = list(self._active.get(run_id, ()))
        for sandbox in sandboxes:
            if sandbox.state == "paused":
                await sandbox.resume()
        return len(sandboxes)

    async def terminate_run(self, run_id: str) -> int:
        """Kill the running calls of ``run_id``: each ends ``terminated``, an error the
        model sees, and the run goes on."""
        sandboxes = list(self._active.get(run_id, ()))
        for sandbox in sandboxes:
            await sandbox.terminate()
        return len(sandboxes)

    async def _run(
        self, pooled: PooledSandbox, scratch: Path | None, filename: str, code: str, argv: list[str]
    ) -> tuple[ExecResult, Collected]:
        if scratch is None:  # no run directory: the files live as long as the call
            await pooled.adopt(None, self.quota)
            await asyncio.to_thread(_write_program, pooled.scratch / filename, code)
            result = await self._exec(pooled, argv)
            await pooled.sandbox.terminate()
            exceeded = await asyncio.to_thread(pooled.volume.exceeded)
            return self._over_quota(result, exceeded), Collected()
        async with self.sandboxes.scratch_lock(scratch):
            await asyncio.to_thread(_write_program, scratch / filename, code)
            await pooled.adopt(scratch, self.quota)
            result = await self._exec(pooled, argv)
            await pooled.sandbox.terminate()  # nothing may write while the files come back
            collected = await pooled.collect(scratch, self.quota)
            return self._over_quota(result, collected.exceeded is not None), collected

    async def _exec(self, pooled: PooledSandbox, argv: list[str]) -> ExecResult:
        """Run the command; a quota the kernel does not enforce is measured while it runs."""
        if pooled.volume.enforced:
            return await pooled.sandbox.exec(argv)
        watch = asyncio.create_task(self._watch_quota(pooled))
        try:
            return await pooled.sandbox.exec(argv)
        finally:
            watch.cancel()

    @staticmethod
    async def _watch_quota(pooled: PooledSandbox) -> None:
        while not await asyncio.to_thread(pooled.volume.exceeded):  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(QUOTA_POLL_S)
        await pooled.sandbox.terminate()

    @staticmethod
    def _over_quota(result: ExecResult, exceeded: bool) -> ExecResult:
        if not exceeded:
            return result
        return dataclasses.replace(result, reason="disk_exceeded", exit_code=None)

    def _explain(self, result: ExecResult) -> str:
        limits, quota = self.limits, self.quota
        return {
            "ok": f"exited with code {result.exit_code}",
            "timeout": f"killed: wall-clock limit of {limits.wall_s:g} s exceeded (timeout)",
            "oom_killed": f"killed: memory limit of {limits.memory_mb} MB exceeded (oom_killed)",
            "cpu_exceeded": f"killed: CPU-time limit of {limits.cpu_s or 0:g} s exceeded "
            "(cpu_exceeded)",
            "pids_exceeded": f"killed: process limit of {limits.pids} exceeded (pids_exceeded)",
            "terminated": "killed: terminated by the runtime (terminated)",
            "sandbox_crashed": "failed: the sandbox itself failed (sandbox_crashed)",
            "disk_exceeded": f"stopped: it wrote past its disk quota ({quota.describe()}); "
            "the files it wrote were discarded (disk_exceeded)",
        }[result.reason]

    def _result(self, result: ExecResult, collected: Collected) -> ToolResult:
        failed = result.reason != "ok" or result.exit_code != 0
        parts = [result.stdout.rstrip("\n")] if result.stdout else []
        if failed:
            if result.stderr:
                parts.append("[stderr]\n" + result.stderr.rstrip("\n"))
            parts.append(f"[{self._explain(result)}]")
        if collected.dropped:
            shown = ", ".join(collected.dropped[:10])
            more = len(collected.dropped) - 10
            parts.append(
                f"[not kept in the working directory: {shown}"
                + (f", and {more} more" if more > 0 else "")
                + "]"
            )
        trace: dict[str, Any] = {
            "backend": result.backend,
            "sandbox_id": result.sandbox_id,
            "reason": result.reason,
            "exit_code": result.exit_code,
            "stderr": result.stderr[-TRACE_STDERR_CHARS:],
            "duration_s": round(result.duration_s, 4),
            "cpu_s": None if result.cpu_s is None else round(result.cpu_s, 4),
            "max_memory_bytes": result.max_memory_bytes,
            "truncated": result.truncated,
            "artifact": None if result.artifact is None else str(result.artifact),
            "scratch": {
                "bytes": collected.bytes,
                "files": collected.entries,
                "dropped": list(collected.dropped),
            },
        }
        if result.egress:
            trace["network"] = list(result.egress)
        return ToolResult("\n".join(parts) or "(no output)", is_error=failed, trace=trace)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """Code runs leave no record to look up: an interrupted call is unknown."""
        return None

    async def close(self) -> None:
        """Stop warming and terminate the sandboxes waiting in the pool."""
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        if self._pool is not None:
            await self._pool.close()
        if self._own_sandboxes:
            await self.sandboxes.close()
