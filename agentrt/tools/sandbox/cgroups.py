"""Per-sandbox cgroups: memory, process and CPU limits, freezing, usage, kill, removal.

Each sandbox gets a cgroup named ``agentrt-<runtime pid>-<sandbox id>``, created
as a child of the cgroup the runtime itself runs in, so that the sandboxes stay
inside whatever limits the runtime was given. cgroup v2 is used when the
runtime's own v2 cgroup delegates the ``memory`` and ``pids`` controllers to its
children (``cgroup.subtree_control``); otherwise the v1 hierarchies ``memory``,
``pids``, ``freezer`` and (optionally) ``cpuacct`` are used, one directory each.

The CPU-seconds limit is not a rate, so ``cpu.cfs_*`` does not express it: the
sandbox polls the accumulated usage (``cpuacct.usage`` or ``cpu.stat``) and
kills the cgroup once it exceeds the limit.

Every file here lives on cgroupfs (kernfs): reads and writes are served from
kernel memory and never wait for I/O, so coroutines call these methods directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentrt._owner import owner_is_dead

__all__ = ["CgroupLayout", "CgroupUnavailable", "SandboxCgroup", "detect_layout", "reap_cgroups"]

PREFIX = "agentrt-"
_NAME = re.compile(r"^agentrt-(\d+)-[0-9a-z]+$")
_V1_REQUIRED = ("memory", "pids", "freezer")
_V1_OPTIONAL = ("cpuacct",)


class CgroupUnavailable(Exception):
    """No writable cgroup hierarchy with the needed controllers (the message says why)."""


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where this process may create sandbox cgroups.

    ``bases`` maps a controller to the directory new cgroups are created in;
    for v2 every controller maps to the same directory.
    """

    version: Literal[1, 2]
    bases: dict[str, Path] = field(default_factory=dict)

    def base_dirs(self) -> list[Path]:
        """The distinct parent directories, one per hierarchy."""
        return sorted(set(self.bases.values()))


def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """(mount root, mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], Path(fields[4]), rest[0], set(rest[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (``""`` for v2) to this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _locate(root: str, point: Path, path: str) -> Path | None:
    """The directory of cgroup ``path`` in a hierarchy mounted at ``point`` from ``root``."""
    if root != "/" and not (path == root or path.startswith(root + "/")):
        return None  # our cgroup is outside what this mount shows
    relative = path[len(root) :] if root != "/" else path
    return point / relative.lstrip("/")


def detect_layout() -> CgroupLayout:
    """Find a usable hierarchy: delegated v2 first, else v1.

    Raises:
        CgroupUnavailable: neither is mounted writable with the needed controllers.
    """
    mounts, own = _mounts(), _own_paths()
    problems: list[str] = []
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        base = _locate(root, point, own[""])
        if base is None:
            continue
        try:
            delegated = set((base / "cgroup.subtree_control").read_text().split())
        except OSError:
            continue
        if {"memory", "pids"} <= delegated and os.access(base, os.W_OK):
            return CgroupLayout(2, {name: base for name in ("memory", "pids", "freezer", "cpu")})
        problems.append(
            f"cgroup v2 at {base} does not delegate memory and pids to children "
            f"(subtree_control: {' '.join(sorted(delegated)) or 'empty'})"
        )
    bases: dict[str, Path] = {}
    for root, point, fstype, options in mounts:
        for name in (*_V1_REQUIRED, *_V1_OPTIONAL):
            if fstype == "cgroup" and name in options and name in own and name not in bases:
                base = _locate(root, point, own[name])
                if base is not None and os.access(base, os.W_OK):
                    bases[name] = base
    missing = [name for name in _V1_REQUIRED if name not in bases]
    if not missing:
        return CgroupLayout(1, bases)
    problems.append(f"cgroup v1 controllers missing or not writable: {', '.join(missing)}")
    raise CgroupUnavailable("; ".join(problems))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _counter(text: str, key: str) -> int:
    """The value of ``key N`` in a flat-keyed cgroup file (memory.events, pids.events)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


class SandboxCgroup:
    """The cgroup (one directory per v1 hierarchy, or one v2 directory) of one sandbox."""

    def __init__(self, layout: CgroupLayout, name: str, dirs: dict[str, Path]) -> None:
        self.layout = layout
        self.name = name
        self.dirs = dirs

    @classmethod
    def create(
        cls, name: str, *, memory_mb: int | None, pids: int | None, layout: CgroupLayout
    ) -> SandboxCgroup:
        """Create the cgroup ``name`` with its memory and process limits.

        Swap is disabled for the cgroup so that the memory limit is a limit on
        RAM + swap: a sandbox cannot page its way past it.

        Raises:
            CgroupUnavailable: a directory or limit could not be written.
        """
        dirs = {ctl: base / name for ctl, base in layout.bases.items()}
        group = cls(layout, name, dirs)
        try:
            for path in set(dirs.values()):
                path.mkdir()
            group._limit(memory_mb, pids)
        except OSError as exc:
            group.remove_now()
            raise CgroupUnavailable(f"cannot set up cgroup {name}: {exc}") from exc
        return group

    def _limit(self, memory_mb: int | None, pids: int | None) -> None:
        mem, pid_dir = self.dirs["memory"], self.dirs["pids"]
        if pids is not None:
            _write(pid_dir / "pids.max", str(pids))
        if memory_mb is None:
            return
        limit = str(memory_mb * 1024 * 1024)
        if self.layout.version == 2:
            _write(mem / "memory.max", limit)
            if (mem / "memory.swap.max").exists():
                _write(mem / "memory.swap.max", "0")
            # One OOM kill ends the whole sandbox, like the v1 path's kill on OOM.
            _write(mem / "memory.oom.group", "1")
            return
        _write(mem / "memory.limit_in_bytes", limit)
        if (mem / "memory.memsw.limit_in_bytes").exists():
            _write(mem / "memory.memsw.limit_in_bytes", limit)
        with contextlib.suppress(OSError):  # refused on some kernels; memsw covers it
            _write(mem / "memory.swappiness", "0")

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the sandbox."""
        return [path / "cgroup.procs" for path in sorted(set(self.dirs.values()))]

    def pids(self) -> list[int]:
        """Processes currently in the cgroup."""
        text = _read(self.dirs["freezer"] / "cgroup.procs")
        return [int(pid) for pid in text.split()]

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process of the cgroup so far, if accounted."""
        if self.layout.version == 2:
            usage = _counter(_read(self.dirs["cpu"] / "cpu.stat"), "usage_usec")
            return usage / 1e6
        if "cpuacct" not in self.dirs:
            return None
        text = _read(self.dirs["cpuacct"] / "cpuacct.usage").strip()
        return int(text) / 1e9 if text.isdigit() else None

    def peak_memory(self) -> int | None:
        """Highest memory use of the cgroup, in bytes, if the kernel reports it."""
        name = "memory.peak" if self.layout.version == 2 else "memory.max_usage_in_bytes"
        text = _read(self.dirs["memory"] / name).strip()
        return int(text) if text.isdigit() else None

    def oom_kills(self) -> int:
        """How many processes the kernel killed at the memory limit."""
        mem = self.dirs["memory"]
        if self.layout.version == 2:
            return _counter(_read(mem / "memory.events"), "oom_kill")
        text = _read(mem / "memory.oom_control")
        if "oom_kill " in text:
            return _counter(text, "oom_kill")
        # Kernels before 4.13 lack the counter: fall back to "the limit was hit".
        failcnt = _read(mem / "memory.failcnt").strip()
        return int(failcnt) if failcnt.isdigit() else 0

    def pids_max_hits(self) -> int:
        """How many forks failed at the process limit."""
        return _counter(_read(self.dirs["pids"] / "pids.events"), "max")

    def _set_frozen(self, frozen: bool) -> None:
        if self.layout.version == 2:
            _write(self.dirs["freezer"] / "cgroup.freeze", "1" if frozen else "0")
        else:
            _write(self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED")

    def is_frozen(self) -> bool:
        """True once every process of the cgroup is frozen."""
        if self.layout.version == 2:
            return _counter(_read(self.dirs["freezer"] / "cgroup.events"), "frozen") == 1
        return _read(self.dirs["freezer"] / "freezer.state").strip() == "FROZEN"

    async def freeze(self, *, timeout_s: float = 5.0) -> None:
        """Freeze every process and wait until the kernel reports them frozen."""
        self._set_frozen(True)
        async with asyncio.timeout(timeout_s):
            # v1 has no notification for the end of FREEZING: poll.
            while not self.is_frozen():  # noqa: ASYNC110
                await asyncio.sleep(0.002)

    def thaw(self) -> None:
        """Let the processes run again."""
        self._set_frozen(False)

    def kill_all(self) -> None:
        """SIGKILL every process of the cgroup, without a window to fork new ones."""
        kill_file = self.dirs["freezer"] / "cgroup.kill"
        if self.layout.version == 2 and kill_file.exists():
            _write(kill_file, "1")
            return
        # Frozen processes cannot fork between listing and killing them; the
        # kill is delivered as soon as they are thawed.
        with contextlib.suppress(OSError):
            self._set_frozen(True)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._set_frozen(False)

    def remove_now(self) -> bool:
        """Try once to remove the directories; True when all are gone."""
        gone = True
        for path in set(self.dirs.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False  # EBUSY: a killed process has not finished exiting
        return gone

    async def remove(self, *, timeout_s: float = 5.0) -> bool:
        """Kill what is left and remove the cgroup; True when it is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if self.pids():
                self.kill_all()
            elif self.remove_now():
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.002)


def _owner_dead(pid: int) -> bool:
    return owner_is_dead(f"{socket.gethostname()}:{pid}:cgroup")


async def reap_cgroups(layout: CgroupLayout | None = None) -> int:
    """Kill and remove ``agentrt-<pid>-*`` cgroups whose runtime pid is dead.

    Returns:
        How many sandbox cgroups were removed.
    """
    if layout is None:
        try:
            layout = detect_layout()
        except CgroupUnavailable:
            return 0
    names: set[str] = set()
    for base in layout.base_dirs():
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                match = _NAME.match(entry.name)
                if match and entry.is_dir() and _owner_dead(int(match.group(1))):
                    names.add(entry.name)
    removed = 0
    for name in sorted(names):
        group = SandboxCgroup(layout, name, {c: b / name for c, b in layout.bases.items()})
        if await group.remove():
            removed += 1
    return removed
