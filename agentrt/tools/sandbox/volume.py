"""A sandbox's ``/scratch``: a volume of its own, with a disk and inode quota.

Where the runtime may mount (it runs as root, as in containers and CI), each
sandbox's scratch is a fresh ``tmpfs`` mounted on the host with ``nosuid`` and
``nodev``, owned by the sandbox's user. Its ``size`` and ``nr_inodes`` are the
quota, enforced by the kernel: a write past it fails with ``ENOSPC``. The
sandbox sees the mount's root, so no host path shows in its mount table.
While a call runs, the volume's pages are in memory and count against the
sandbox's memory limit (they are freed when the volume is unmounted).

Where it may not, the volume is a plain directory and the quota is measured
instead: polled while the call runs (see :mod:`.files`), and checked once more
after it, before anything is copied back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agentrt._text import count
from agentrt.tools.sandbox.files import Tally, measure
from agentrt.tools.sandbox.identity import SandboxUser

__all__ = ["DiskQuota", "ScratchVolume", "mounted_volumes", "unmount"]

_MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 0x2, 0x4, 0x20
_MNT_DETACH = 0x2
_PAGE = os.sysconf("SC_PAGESIZE")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(target: Path, flags: int, options: str) -> None:
    source = None if flags & _MS_REMOUNT else b"agentrt-scratch"
    fstype = None if flags & _MS_REMOUNT else b"tmpfs"
    if _libc().mount(source, os.fsencode(target), fstype, flags, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def unmount(target: Path) -> None:
    """Detach a volume's mount (a no-op if nothing is mounted there)."""
    if _libc().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), str(target))


def mounted_volumes(under: Path) -> list[Path]:
    """Volume mounts below ``under`` (left by a runtime that crashed)."""
    prefix = str(under.resolve()) + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix) and " - tmpfs agentrt-scratch " in line:
                found.append(Path(point))
    return found


@dataclass(frozen=True, slots=True)
class DiskQuota:
    """How much one call may add to a run's scratch directory, and what the run may hold.

    Sizes are apparent sizes (a sparse file counts as large as it reads);
    entries are files, directories and links alike.
    """

    call_bytes: int
    call_entries: int
    run_bytes: int
    run_entries: int

    def run_total(self) -> Tally:
        """The run's limits as a tally to compare with."""
        return Tally(self.run_bytes, self.run_entries)

    def describe(self) -> str:
        """Both quotas, in words."""
        call = f"{_mb(self.call_bytes)} and {count(self.call_entries, 'file')} per call"
        run = f"{_mb(self.run_bytes)} and {count(self.run_entries, 'file')} in all"
        return f"{call}, {run}"

    def describe_call(self) -> str:
        """The call quota, in words."""
        return f"the call's disk quota ({_mb(self.call_bytes)}, {count(self.call_entries, 'file')})"

    def describe_run(self) -> str:
        """The run quota, in words."""
        return f"the run's disk quota ({_mb(self.run_bytes)}, {count(self.run_entries, 'file')})"


def _mb(size: int) -> str:
    return f"{size / (1 << 20):g} MB"


@dataclass(slots=True)
class ScratchVolume:
    """The directory a sandbox sees as ``/scratch``. Blocking methods: call them in a thread."""

    path: Path
    owner: SandboxUser
    enforced: bool  # a tmpfs whose quota the kernel enforces, else a measured directory
    max_bytes: int | None = None
    max_entries: int | None = None

    @classmethod
    def create(cls, path: Path, owner: SandboxUser) -> ScratchVolume:
        """A new, empty volume at ``path`` (a directory that must not exist yet).

        It holds almost nothing until :meth:`limit` gives it its quota.
        """
        path.mkdir(mode=0o700)
        volume = cls(path, owner, enforced=False)
        try:
            _mount(path, _MS_NOSUID | _MS_NODEV, volume._options(_PAGE, 4, initial=True))
            volume.enforced = True
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENODEV):
                path.rmdir()
                raise
        if not owner.is_runtime:
            os.chown(path, owner.uid, owner.gid)
        return volume

    def _options(self, size: int, inodes: int, *, initial: bool = False) -> str:
        # 0 would mean "unlimited" to tmpfs: a quota is never below one page and one file.
        options = f"size={max(size, _PAGE)},nr_inodes={max(inodes, 2)}"
        if initial:
            options += f",mode=0700,uid={self.owner.uid},gid={self.owner.gid}"
        return options

    def limit(self, max_bytes: int, max_entries: int) -> None:
        """Set the quota: at most ``max_bytes`` of data and ``max_entries`` files and
        directories, counting what is in the volume now."""
        self.max_bytes, self.max_entries = max_bytes, max_entries
        if self.enforced:
            # tmpfs counts whole pages and its root directory as an inode.
            size = max_bytes + max_entries * _PAGE
            flags = _MS_REMOUNT | _MS_NOSUID | _MS_NODEV
            _mount(self.path, flags, self._options(size, max_entries + 1))

    def grow_by(self, more_bytes: int, more_entries: int, *, cap: Tally) -> None:
        """Allow one call to add ``more_bytes`` and ``more_entries`` to what is there now,
        but never past the totals in ``cap``."""
        now = self.tally()
        self.limit(
            min(now.bytes + more_bytes, cap.bytes), min(now.entries + more_entries, cap.entries)
        )

    def tally(self) -> Tally:
        """What the volume holds (bounded: stops counting past its quota)."""
        return measure(self.path, max_bytes=self.max_bytes, max_entries=self.max_entries)

    def exceeded(self) -> bool:
        """True when the quota was reached: the kernel refused a write, or the tally is over."""
        if self.enforced:
            info = os.statvfs(self.path)
            if info.f_bavail == 0 or info.f_favail == 0:
                return True
        return self.tally().over(self.max_bytes, self.max_entries)

    def destroy(self) -> None:
        """Unmount and remove the volume with everything in it."""
        if self.enforced:
            unmount(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
