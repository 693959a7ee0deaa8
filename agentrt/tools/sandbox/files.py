"""Files between a run's scratch directory and a sandbox's, never trusting what comes back.

A run's files live on the host in its scratch directory. For a call they are
copied into the sandbox's own volume (:mod:`.volume`), and afterwards the
volume's content is copied back, *normalised*, into a fresh directory that then
replaces the run's: what the sandboxed code left is untrusted input to the host.

Normalised means: only directories, regular files and symlinks that stay inside
the tree come back; FIFOs, sockets and device files are dropped, and so are
symlinks that are absolute, point outside, or do not resolve to anything in the
tree. Modes lose their setuid, setgid and sticky bits and the write bit for
others; every file is owned by the runtime's user. The host never follows a
symlink of the sandbox's while walking or copying: every open is relative to a
directory descriptor, with ``O_NOFOLLOW``.

:func:`measure` counts a tree (bytes and entries, apparent sizes, so that a
sparse file counts as large as it reads) and stops as soon as it passes a
limit, so that measuring costs at most what the quota allows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAX_DEPTH",
    "Tally",
    "copy_in",
    "copy_out",
    "measure",
    "replace_dir",
]

MAX_DEPTH = 64  # directories nested deeper than this do not come back
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(slots=True)
class Tally:
    """What a tree holds: apparent bytes of its files, and its entries (of any kind)."""

    bytes: int = 0
    entries: int = 0
    too_deep: bool = False
    dropped: list[str] = field(default_factory=list)  # what copy_out left out, and why

    def over(self, max_bytes: int | None, max_entries: int | None) -> bool:
        """True when the tree is past either limit (or nested too deep)."""
        return (
            self.too_deep
            or (max_bytes is not None and self.bytes > max_bytes)
            or (max_entries is not None and self.entries > max_entries)
        )


def _scan(dir_fd: int) -> Iterator[os.DirEntry[str]]:
    with os.scandir(dir_fd) as entries:
        yield from entries


def _size(info: os.stat_result) -> int:
    # A sparse file is as large as it reads (and as a copy or a snapshot of it).
    return max(info.st_size, info.st_blocks * 512) if stat.S_ISREG(info.st_mode) else 0


def measure(root: Path, *, max_bytes: int | None = None, max_entries: int | None = None) -> Tally:
    """Count ``root``'s tree without following symlinks; stop once past a limit.

    Missing or unreadable parts count as empty: a sandbox cannot hide files
    from the measure this way, because they cannot be copied back either.
    """
    tally = Tally()
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError:
        return tally
    stack: list[tuple[int, int]] = [(top, 0)]
    try:
        while stack:
            fd, depth = stack.pop()
            try:
                for entry in _scan(fd):
                    info = entry.stat(follow_symlinks=False)
                    tally.entries += 1
                    tally.bytes += _size(info)
                    if tally.over(max_bytes, max_entries):
                        return tally
                    if stat.S_ISDIR(info.st_mode):
                        if depth + 1 > MAX_DEPTH:
                            tally.too_deep = True
                            return tally
                        with contextlib.suppress(OSError):
                            stack.append((os.open(entry.name, _DIR_FLAGS, dir_fd=fd), depth + 1))
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return tally


def _file_mode(mode: int) -> int:
    return 0o755 if mode & stat.S_IXUSR else 0o644


def _copy_file(
    src_fd: int, name: str, dst_fd: int, mode: int, owner: tuple[int, int] | None
) -> int:
    """Copy regular file ``name``; returns the bytes written."""
    source = os.open(name, _FILE_FLAGS, dir_fd=src_fd)
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):  # swapped since it was listed
            return 0
        target = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            _file_mode(mode),
            dir_fd=dst_fd,
        )
        try:
            written = 0
            while chunk := os.read(source, _CHUNK):
                os.write(target, chunk)
                written += len(chunk)
            os.fchmod(target, _file_mode(mode))  # the umask does not decide
            if owner is not None:
                os.fchown(target, *owner)
            return written
        finally:
            os.close(target)
    finally:
        os.close(source)


def _inside(rel_dir: str, target: str) -> bool:
    """True when a symlink in ``rel_dir`` pointing at ``target`` stays within the tree."""
    if not target or os.path.isabs(target) or "\0" in target:
        return False
    joined = os.path.normpath(os.path.join(rel_dir, target))
    return joined != ".." and not joined.startswith("../") and joined != "."


def _copy_tree(
    src_root: Path,
    dst_root: Path,
    *,
    owner: tuple[int, int] | None,
    normalise: bool,
    tally: Tally,
) -> None:
    src_top = os.open(src_root, _DIR_FLAGS)
    dst_top = os.open(dst_root, _DIR_FLAGS)
    stack: list[tuple[int, int, str, int]] = [(src_top, dst_top, "", 0)]
    links: list[tuple[int, str, str, str]] = []  # (dst dir fd, name, target, rel dir)
    opened = [src_top, dst_top]
    try:
        while stack:
            src_fd, dst_fd, rel, depth = stack.pop()
            for entry in _scan(src_fd):
                info = entry.stat(follow_symlinks=False)
                path = os.path.join(rel, entry.name)
                kind = stat.S_IFMT(info.st_mode)
                if kind == stat.S_IFDIR:
                    if depth + 1 > MAX_DEPTH:
                        tally.dropped.append(f"{path}/ (nested deeper than {MAX_DEPTH})")
                        continue
                    os.mkdir(entry.name, 0o755, dir_fd=dst_fd)
                    child_dst = os.open(entry.name, _DIR_FLAGS, dir_fd=dst_fd)
                    opened.append(child_dst)
                    os.chmod(child_dst, 0o755)
                    if owner is not None:
                        os.fchown(child_dst, *owner)
                    try:
                        child_src = os.open(entry.name, _DIR_FLAGS, dir_fd=src_fd)
                    except OSError:
                        continue
                    opened.append(child_src)
                    stack.append((child_src, child_dst, path, depth + 1))
                    tally.entries += 1
                elif kind == stat.S_IFREG:
                    with contextlib.suppress(OSError):
                        tally.bytes += _copy_file(src_fd, entry.name, dst_fd, info.st_mode, owner)
                        tally.entries += 1
                elif kind == stat.S_IFLNK:
                    target = os.readlink(entry.name, dir_fd=src_fd)
                    if normalise and not _inside(rel, target):
                        tally.dropped.append(f"{path} (a symlink out of the directory)")
                        continue
                    links.append((dst_fd, entry.name, target, rel))
                else:
                    tally.dropped.append(f"{path} (not a file, directory or symlink)")
        # Links last, once every file and directory they may point to exists.
        for dst_fd, name, target, rel in links:
            if normalise and not _resolves_inside(dst_root, rel, target):
                tally.dropped.append(f"{os.path.join(rel, name)} (a symlink to nothing)")
                continue
            os.symlink(target, name, dir_fd=dst_fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dst_fd, follow_symlinks=False)
            tally.entries += 1
    finally:
        for fd in opened:
            os.close(fd)


def _resolves_inside(root: Path, rel_dir: str, target: str) -> bool:
    """True when ``target`` names an existing file or directory of ``root``'s new tree.

    The tree is ours (just written, without links yet), so resolving it follows
    only the real directories made by the copy.
    """
    joined = os.path.normpath(os.path.join(rel_dir, target))
    candidate = root / joined
    try:
        return candidate.resolve(strict=True).is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def copy_in(run_dir: Path, volume: Path, owner: tuple[int, int] | None) -> Tally:
    """Copy the run's (already normalised) files into an empty sandbox volume.

    ``owner`` is the sandbox's uid and gid, so that its code may change them;
    None keeps the runtime's.
    """
    tally = Tally()
    if run_dir.is_dir():
        _copy_tree(run_dir, volume, owner=owner, normalise=False, tally=tally)
    return tally


def copy_out(volume: Path, staging: Path) -> Tally:
    """Copy a sandbox volume's content, normalised, into the new directory ``staging``.

    The caller has measured the volume first, so the copy is bounded by the quota.
    """
    staging.mkdir(mode=0o755)
    tally = Tally()
    _copy_tree(volume, staging, owner=None, normalise=True, tally=tally)
    return tally


def replace_dir(target: Path, new: Path) -> None:
    """Put directory ``new`` in the place of ``target`` (the old one is removed).

    ``renameat2(RENAME_EXCHANGE)`` swaps the two atomically where the file
    system supports it, so a crash leaves one complete version in place.
    """
    if target.exists() and _exchange(new, target):
        shutil.rmtree(new)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
