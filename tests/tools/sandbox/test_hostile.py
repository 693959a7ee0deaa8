"""Hostile code against the kernel: every attempt is contained, reported, and changes nothing.

Run as root (as CI runs them), these are the escapes found when sandboxed code
ran as the host's uid 0: sysctls, cgroup limits, keyrings, the wider kernel
surface, host paths, and forged exit statuses. Each test checks the host state
the attack targeted, not only what the code printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentrt.tools.sandbox.base import SandboxLimits, SandboxPolicy
from agentrt.tools.sandbox.cgroups import detect_layout
from agentrt.tools.sandbox.identity import sandbox_user
from agentrt.tools.sandbox.registry import make_backend
from agentrt.tools.sandbox.seccomp import DENIED
from agentrt.tools.sandbox.selection import choose_backend
from tests.tools.sandbox import not_tested
from tests.tools.sandbox.hostile import (
    ISOLATING,
    SYSCALLS,
    Tools,
    host_processes_with,
    host_syscall,
    run_code,
    tools_for,
)

KNOBS = ("kernel/core_pattern", "vm/drop_caches", "kernel/pid_max", "vm/overcommit_memory")


@pytest.fixture(params=ISOLATING)
async def sandboxed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tools]:
    """CodeTools of each isolating backend."""
    made = await tools_for(request.param, tmp_path)
    yield made
    await made.close()


def _read_knobs() -> dict[str, str]:
    # drop_caches cannot be read back: what it does is not state.
    return {k: Path("/proc/sys", k).read_text() for k in KNOBS if k != "vm/drop_caches"}


async def test_code_never_runs_as_host_root(sandboxed: Tools, tmp_path: Path) -> None:
    scratch = tmp_path / "run"
    result = await run_code(
        sandboxed.tool(),
        """
        import os, time
        print(os.getuid(), os.geteuid(), os.getgid(), os.getegid())
        open("mine.txt", "w").write("x")
        print(os.stat("mine.txt").st_uid)
        """,
        scratch,
    )
    assert result.trace["reason"] == "ok", result.output
    uid, euid, gid, egid, owner = (int(word) for word in result.output.split())
    assert 0 not in (uid, euid, gid, egid, owner), result.output


@pytest.mark.parametrize("backend", ["bubblewrap", "process"])
async def test_the_host_sees_no_root_process(backend: str, tmp_path: Path) -> None:
    """Every process of the sandbox, as the host sees it, has an unprivileged uid."""
    tools = await tools_for(backend, tmp_path)
    marker = f"agentrt-uid-check-{secrets.token_hex(4)}"
    try:
        code = f"import os; os.execv('/bin/sleep', ['{marker}', '3'])"
        call = asyncio.create_task(run_code(tools.tool(), code, tmp_path / "run"))
        seen: dict[int, list[int]] = {}
        while not call.done() and not seen:
            await asyncio.sleep(0.05)
            seen = host_processes_with(marker)
        result = await call
    finally:
        await tools.close()
    assert seen, f"the sandboxed process was never seen: {result.output}"
    for pid, ids in seen.items():
        assert 0 not in ids, (pid, ids)  # real, effective, saved, file-system uid and gids


async def test_kernel_knobs_are_read_only(sandboxed: Tools, tmp_path: Path) -> None:
    """The host's sysctls cannot be written (under gVisor, /proc/sys is its own kernel's)."""
    before = _read_knobs()
    # On the host's kernel, writing back the value read is enough to tell, and harmless
    # (even the knobs of the sandbox's own namespaces must be read-only); under gVisor
    # the code tries to change them, and the host must not see it.
    change = sandboxed.backend == "gvisor"
    result = await run_code(
        sandboxed.tool(),
        f"""
        import os
        for knob in {list(KNOBS)!r}:
            path = "/proc/sys/" + knob
            try:
                value = "|/scratch/core %p" if knob.endswith("core_pattern") else "1"
                if not {change!r} and knob != "vm/drop_caches":
                    value = open(path).read()
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
                print("WROTE", knob)
            except FileNotFoundError:
                print("ABSENT", knob)
            except OSError as exc:
                print("DENIED", knob, type(exc).__name__)
        """,
        tmp_path / "run",
    )
    assert len(result.output.splitlines()) == len(KNOBS), result.output
    if not change:
        assert "WROTE" not in result.output, result.output
    assert _read_knobs() == before


def _own_limits() -> dict[str, str]:
    """The limits of the cgroups the runtime (this test) runs in: a sandbox must not reach them."""
    layout = detect_layout()
    found = {}
    for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max", "pids.max"):
        for base in layout.base_dirs():
            if (base / name).exists():
                found[str(base / name)] = (base / name).read_text()
    return found


async def test_limits_cannot_be_raised_from_inside(sandboxed: Tools, tmp_path: Path) -> None:
    before = _own_limits()
    result = await run_code(
        sandboxed.tool(limits={"memory_mb": 64, "pids": 16}),
        """
        import ctypes, errno, functools, os
        print = functools.partial(print, flush=True)  # what it did survives its OOM kill
        libc = ctypes.CDLL(None, use_errno=True)
        NEWUSER, NEWNS, NEWCGROUP = 0x10000000, 0x00020000, 0x02000000
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(NEWUSER | NEWNS | NEWCGROUP) == 0:
            print("UNSHARED")
            for name, line in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                               ("gid_map", f"0 {gid} 1")):
                try:
                    open("/proc/self/" + name, "w").write(line)
                except OSError as exc:
                    print("map denied", name, exc.errno)
        else:
            print("unshare denied", errno.errorcode[ctypes.get_errno()])
        for fs, opts in (("cgroup", b"memory"), ("cgroup", b"pids"), ("cgroup2", None)):
            point = f"/tmp/cg-{fs}-{opts}".encode()
            os.makedirs(point, exist_ok=True)
            if libc.mount(fs.encode(), point, fs.encode(), 0, opts) != 0:
                print("mount denied", fs, errno.errorcode[ctypes.get_errno()])
                continue
            print("MOUNTED", fs)
            for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max",
                         "pids.max"):
                try:
                    open(os.path.join(point.decode(), name), "w").write(
                        "max" if name in ("pids.max", "memory.max") else str(1 << 40))
                    print("RAISED", name)
                except OSError:
                    pass
        memory = bytearray(150 << 20)
        for i in range(0, len(memory), 4096):
            memory[i] = 1
        print("ALLOCATED")
        """,
        tmp_path / "run",
    )
    assert "RAISED" not in result.output and "MOUNTED" not in result.output, result.output
    assert "ALLOCATED" not in result.output
    assert result.trace["reason"] == "oom_killed", result.output
    assert _own_limits() == before


async def test_keyrings_are_out_of_reach(sandboxed: Tools, tmp_path: Path) -> None:
    """Neither the runtime's keys nor another sandbox's are readable, and nothing is planted."""
    tag = secrets.token_hex(4)
    # The runtime's own session keyring holds a secret: sandboxes inherit
    # possession of it unless the keyring calls are denied.
    host_key = host_syscall(
        "add_key", b"user", f"agentrt-host-{tag}".encode(), b"HOSTSECRET", 10, -3
    )
    assert host_key > 0, host_key
    try:
        probe = SYSCALLS + textwrap.dedent(
            f"""
        import sys
        tag = {tag!r}
        for ring in (-3, -4):  # session, user
            for desc in (f"agentrt-host-{{tag}}", f"agentrt-planted-{{tag}}"):
                found, why = sc("keyctl", 10, ring, b"user", desc.encode(), 0)  # KEYCTL_SEARCH
                buf = ctypes.create_string_buffer(64)
                if found > 0 and sc("keyctl", 11, found, buf, 64)[0] > 0:  # KEYCTL_READ
                    print("READ", desc, buf.value)
                else:
                    print("search", desc, why)
            made, why = sc("add_key", b"user", f"agentrt-planted-{{tag}}".encode(), b"x", 1, ring)
            print("PLANTED" if made > 0 else "plant denied " + why)
        """
        )
        tool = sandboxed.tool()
        first = await run_code(tool, probe, tmp_path / "run-a")
        second = await run_code(tool, probe, tmp_path / "run-b", "c2")  # another run's sandbox
    finally:
        host_syscall("keyctl", 3, host_key)  # KEYCTL_REVOKE
    for result in (first, second):
        assert "READ" not in result.output and "PLANTED" not in result.output, result.output
        assert "HOSTSECRET" not in result.output
        assert result.output.count("search") == 4 and result.output.count("plant denied") == 2
    assert f"agentrt-planted-{tag}" not in Path("/proc/keys").read_text()


async def test_bubblewrap_filters_the_kernel_surface(tmp_path: Path) -> None:
    """Calls agent code never needs fail with EPERM (or ENOSYS, for clone3's fallback)."""
    tools = await tools_for("bubblewrap", tmp_path)
    calls = {
        "io_uring_setup": "1, ctypes.create_string_buffer(120)",
        "perf_event_open": "ctypes.create_string_buffer(128), 0, -1, -1, 0",
        "userfaultfd": "0",
        "bpf": "0, 0, 0",
        "unshare": "0x10000000",  # CLONE_NEWUSER
        "mount": "b'none', b'/tmp', b'tmpfs', 0, 0",
        "ptrace": "0, 0, 0, 0",  # PTRACE_TRACEME
        "keyctl": "0, -4, 0",
        "add_key": "b'user', b'x', b'x', 1, -4",
        "request_key": "b'user', b'x', 0, 0",
        "setns": "0, 0",
        "kexec_load": "0, 0, 0, 0",
        "init_module": "0, 0, b''",
        "open_by_handle_at": "0, 0, 0",
        "pivot_root": "b'/tmp', b'/tmp'",
        "fsopen": "b'tmpfs', 0",
        "swapon": "b'/tmp/x', 0",
        "clone3": "0, 0",
    }
    code = SYSCALLS + "".join(
        f"print({name!r}, sc({name!r}, {args})[1])\n" for name, args in calls.items()
    )
    code += "print('seccomp', open('/proc/self/status').read().split('Seccomp:')[1].split()[0])\n"
    try:
        result = await run_code(tools.tool(), code, tmp_path / "run")
    finally:
        await tools.close()
    seen = dict(line.split() for line in result.output.splitlines())
    assert seen.pop("seccomp") == "2", result.output  # a filter is installed
    assert seen.pop("clone3") == "ENOSYS"  # so that libc falls back to clone, which is filtered
    assert seen == dict.fromkeys(calls.keys() - {"clone3"}, "EPERM"), result.output


async def test_no_host_path_is_visible(sandboxed: Tools, tmp_path: Path) -> None:
    result = await run_code(
        sandboxed.tool(),
        """
        import os
        for name in ("/proc/self/mountinfo", "/proc/self/mounts", "/proc/1/mountinfo"):
            try:
                print(open(name).read())
            except OSError:
                pass
        print(os.getcwd(), os.path.realpath("/scratch"))
        """,
        tmp_path / "run",
    )
    assert result.trace["reason"] == "ok", result.output
    assert str(tmp_path) not in result.output, result.output
    assert str(sandboxed.workdir) not in result.output


async def test_the_exit_status_cannot_be_forged(sandboxed: Tools, tmp_path: Path) -> None:
    """Whatever the code writes to any file descriptor it can reach, its real end is reported."""
    result = await run_code(
        sandboxed.tool(),
        """
        import os, time
        for pid in ("self", "1", str(os.getppid())):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    with open(f"/proc/{pid}/fd/{fd}", "w") as out:
                        out.write("exit 0\\n0\\n")
                except OSError:
                    pass
        for name in os.listdir("/") + [".agentrt/status"]:
            try:
                open("/" + name, "w").write("0\\n")
            except OSError:
                pass
        time.sleep(2)
        os._exit(3)
        """,
        tmp_path / "run",
    )
    assert result.trace["reason"] == "ok"
    assert result.trace["exit_code"] == 3, result.output
    assert result.trace["duration_s"] >= 2


@pytest.mark.parametrize("backend", [*ISOLATING, "process"])
async def test_every_backend_caps_output_alike(backend: str, tmp_path: Path) -> None:
    """The same kept head, marker and artifact cap on stdout and stderr, on every backend."""
    await tools_for(backend, tmp_path)  # a loud skip (a failure in CI) if it does not work
    workdir = tmp_path / "workdir"
    made = make_backend(backend, workdir=workdir)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    limits = SandboxLimits(wall_s=30, output_bytes=1000, artifact_bytes=100_000)
    box = await made.create(SandboxPolicy(scratch), limits)
    try:
        result = await box.exec(
            [
                "python3",
                "-c",
                "import sys\nfor s in (sys.stdout, sys.stderr): s.write('x' * 300000)",
            ]
        )
    finally:
        await box.terminate()
    assert (result.reason, result.exit_code, result.truncated) == ("ok", 0, True), result
    for text in (result.stdout, result.stderr):
        head, _, marker = text.partition("\n")
        assert head == "x" * 1000
        assert marker.startswith("[output truncated at 1000 bytes; full output: artifact ")
        assert marker.endswith("(its first 100000 bytes)]")
    artifacts = sorted((workdir / "artifacts").iterdir())
    assert [a.stat().st_size for a in artifacts] == [100_000, 100_000]


async def test_auto_picks_a_safe_and_fast_backend(tmp_path: Path) -> None:
    """bubblewrap where it works (see docs/performance.md for why), never `process`."""
    await tools_for("bubblewrap", tmp_path)
    picked = await choose_backend(
        "auto", allow_unsafe=True, policy_needs_network_allowlist=False, workdir=tmp_path / "w"
    )
    assert picked.name == "bubblewrap"


def test_doctor_reports_the_uid_the_filter_and_the_quota(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTRT_SANDBOX_DIR": str(tmp_path / "sandboxes")}
    done = subprocess.run(
        [sys.executable, "-m", "agentrt.cli.main", "doctor", "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout)
    by_name = {row["backend"]: row for row in report["backends"]}
    bubblewrap = by_name["bubblewrap"]
    if not bubblewrap["ok"]:
        not_tested(f"BUBBLEWRAP IS NOT TESTED: {bubblewrap['detail']}")
    user = sandbox_user()
    assert f"runs as uid {user.uid} and gid {user.gid} (not root)" in bubblewrap["detail"]
    assert f"seccomp filter denying {len(DENIED)} system calls" in bubblewrap["detail"]
    assert "disk quota enforced by a tmpfs per sandbox" in bubblewrap["detail"]
    assert report["auto"] == "bubblewrap"
