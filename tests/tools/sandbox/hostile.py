"""Shared pieces of the hostile-code tests: a CodeTool per backend and a syscall helper.

The code under test is what a model could write: plain Python calling the
kernel through ``ctypes``. Every test runs it through the ``code`` tool, the
path model-written code takes in production, as the user the test suite runs
as (root in CI).
"""

from __future__ import annotations

import ctypes
import os
import textwrap
from pathlib import Path
from typing import Any

from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext, ToolResult
from agentrt.tools.code import CodeTool
from agentrt.tools.sandbox.registry import make_backend
from tests.tools.sandbox import not_tested

ISOLATING = ["gvisor", "bubblewrap"]

SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "io_uring_setup": 425, "perf_event_open": 298, "userfaultfd": 323, "bpf": 321,
        "unshare": 272, "mount": 165, "ptrace": 101, "keyctl": 250, "add_key": 248,
        "request_key": 249, "setns": 308, "kexec_load": 246, "init_module": 175,
        "open_by_handle_at": 304, "pivot_root": 155, "clone3": 435, "fsopen": 430,
        "swapon": 167, "reboot": 169,
    },
    "aarch64": {
        "io_uring_setup": 425, "perf_event_open": 241, "userfaultfd": 282, "bpf": 280,
        "unshare": 97, "mount": 40, "ptrace": 117, "keyctl": 219, "add_key": 217,
        "request_key": 218, "setns": 268, "kexec_load": 104, "init_module": 105,
        "open_by_handle_at": 265, "pivot_root": 41, "clone3": 435, "fsopen": 430,
        "swapon": 224, "reboot": 142,
    },
}  # fmt: skip

# Python that defines `sc(name, *args) -> (result, errno name or "OK")` for raw syscalls.
SYSCALLS = textwrap.dedent(
    f"""
    import ctypes, errno, os
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syscall.restype = ctypes.c_long
    _NR = {SYSCALL_NUMBERS!r}[os.uname().machine]

    def _arg(a):
        return a if isinstance(a, (bytes, ctypes.Array)) else ctypes.c_long(a)

    def sc(name, *args):
        ctypes.set_errno(0)
        result = _libc.syscall(ctypes.c_long(_NR[name]), *[_arg(a) for a in args])
        err = ctypes.get_errno()
        return result, ("OK" if result >= 0 else errno.errorcode.get(err, str(err)))
    """
)


def host_syscall(name: str, *args: int | bytes) -> int:
    """Call syscall ``name`` in this (the host's) process; -errno on failure."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    number = SYSCALL_NUMBERS[os.uname().machine][name]
    values = [a if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = int(libc.syscall(ctypes.c_long(number), *values))
    return result if result >= 0 else -ctypes.get_errno()


def ctx(scratch: Path | None, call_id: str = "c1", run_id: str = "run-1") -> ToolContext:
    """The context of one call of a run whose scratch directory is ``scratch``."""
    return ToolContext(run_id, 1, call_id, "default", None, scratch=scratch)


_why_not: dict[str, str | None] = {}


async def backend_problem(name: str, workdir: Path) -> str | None:
    """Why backend ``name`` does not work here (None: it works); probed once per test run."""
    if name not in _why_not:
        probe = await make_backend(name, workdir=workdir).probe()
        _why_not[name] = None if probe.ok else probe.detail
    return _why_not[name]


class Tools:
    """CodeTools of one backend over a private workdir, all closed at the end of the test."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self._made: list[CodeTool] = []

    def tool(self, **spec: Any) -> CodeTool:
        """A CodeTool of this backend with ``spec`` merged into a default Tool spec."""
        code = {"sandbox": self.backend, "allow_unsafe": self.backend == "process"}
        body: dict[str, Any] = {"kind": "code", "timeout_s": 30, **spec}
        body["code"] = code | spec.get("code", {})
        made = CodeTool(
            "run_code", ToolSpec.model_validate(body), workdir=self.workdir, pool_size=0
        )
        self._made.append(made)
        return made

    async def close(self) -> None:
        """Close every tool made (their sandboxes and pools)."""
        for made in self._made:
            await made.close()


async def tools_for(backend: str, tmp_path: Path) -> Tools:
    """A :class:`Tools` of ``backend``, or a loud skip (a failure under CI) if it does not work."""
    workdir = tmp_path / "workdir"
    why = await backend_problem(backend, tmp_path / "probe")
    if why is not None:
        not_tested(f"SANDBOX BACKEND {backend!r} IS NOT TESTED: its probe failed: {why}")
    return Tools(backend, workdir)


async def run_code(tool: CodeTool, code: str, scratch: Path, call_id: str = "c1") -> ToolResult:
    """One call of ``tool`` running Python ``code`` (dedented) in the run scratch ``scratch``."""
    return await tool.call("run_code", {"code": textwrap.dedent(code)}, ctx(scratch, call_id))


def host_processes_with(marker: str) -> dict[int, list[int]]:
    """Host processes whose command line holds ``marker``: pid -> their uids and gids."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ids = []
        for line in status.splitlines():
            if line.startswith(("Uid:", "Gid:")):
                ids += [int(word) for word in line.split()[1:]]
        found[int(pid)] = ids
    return found
