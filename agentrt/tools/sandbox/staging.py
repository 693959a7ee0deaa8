"""Directories the sandbox user can reach, when it is not the runtime's own user.

A sandbox started as the unprivileged sandbox user (the runtime is root) must
reach its scratch directory and its read paths by path, but they often lie
below directories closed to it (``/root``, a private temp dir). The runtime,
as root, bind-mounts each of them under :data:`STAGE_ROOT`, whose directories
are only traversable (mode 0711: nothing there can be listed), and gives the
sandbox those paths instead. The binds are removed with the sandbox; those of
a runtime that died are removed by :func:`reap_stages`.

When the sandbox user is the runtime's own user, nothing is staged: the paths
are used as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from agentrt._owner import owner_is_dead
from agentrt.tools.sandbox.identity import SandboxUser

__all__ = ["STAGE_ROOT", "Stage", "reap_stages"]

STAGE_ROOT = Path("/run/agentrt/stage")
_MS_BIND, _MS_REC = 0x1000, 0x4000
_MNT_DETACH = 0x2
_NAME = re.compile(r"^agentrt-(\d+)-[0-9a-f]+$")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _bind(source: Path, target: Path, *, recursive: bool) -> None:
    flags = _MS_BIND | (_MS_REC if recursive else 0)
    if _libc().mount(os.fsencode(source), os.fsencode(target), None, flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(source))


def _unbind(target: Path) -> None:
    if _libc().umount2(os.fsencode(target), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), str(target))


@dataclass(slots=True)
class Stage:
    """Where one sandbox finds its scratch and read paths. Blocking: call it in a thread."""

    scratch: Path
    read_paths: list[Path]
    home: Path | None = None  # the staging directory, None when nothing was staged
    _mounted: list[Path] = field(default_factory=list)

    @classmethod
    def prepare(
        cls, user: SandboxUser, name: str, scratch: Path, read_paths: tuple[str, ...]
    ) -> Stage:
        """Stage ``scratch`` and ``read_paths`` for a sandbox named ``name`` (if needed)."""
        if user.is_runtime:
            return cls(scratch, [Path(p) for p in read_paths])
        for shared in (STAGE_ROOT.parent, STAGE_ROOT):
            shared.mkdir(mode=0o711, exist_ok=True)
            os.chmod(shared, 0o711)
        home = STAGE_ROOT / name
        home.mkdir(mode=0o711)
        stage = cls(home / "scratch", [], home)
        try:
            # The scratch is one directory: mounts below it (another sandbox's volume,
            # say) are not part of it. A read path is granted with what is mounted below.
            stage._mount(scratch, stage.scratch, recursive=False)
            for index, read_path in enumerate(read_paths):
                stage.read_paths.append(home / f"read-{index}")
                stage._mount(Path(read_path), stage.read_paths[-1], recursive=True)
        except BaseException:
            stage.remove()
            raise
        return stage

    def _mount(self, source: Path, point: Path, *, recursive: bool) -> None:
        if source.is_dir():
            point.mkdir(mode=0o711)
        else:
            point.touch(mode=0o600)
        _bind(source, point, recursive=recursive)
        self._mounted.append(point)

    def remove(self) -> None:
        """Undo the binds and remove the staging directory. Idempotent."""
        for point in reversed(self._mounted):
            _unbind(point)
        self._mounted.clear()
        if self.home is not None:
            _remove_home(self.home)
            self.home = None


def _remove_home(home: Path) -> None:
    # Only empty mount points are left once unbound: never recurse through a bind.
    for entry in home.iterdir() if home.is_dir() else []:
        _unbind(entry)
        with contextlib.suppress(OSError):
            entry.rmdir() if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    with contextlib.suppress(OSError):
        home.rmdir()
    if home.exists():  # something is still mounted: leave it rather than delete through it
        raise OSError(errno.EBUSY, f"staging directory {home} is still in use")


def reap_stages() -> int:
    """Remove the staging directories of sandboxes whose runtime died; return the count."""
    if not STAGE_ROOT.is_dir():
        return 0
    host = socket.gethostname()
    removed = 0
    for home in STAGE_ROOT.iterdir():
        match = _NAME.match(home.name)
        if match and owner_is_dead(f"{host}:{match.group(1)}:stage"):
            with contextlib.suppress(OSError):
                _remove_home(home)
                removed += 1
    return removed
