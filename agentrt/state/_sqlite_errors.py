"""What a SQLite or file-system failure means for the store, as one :class:`StoreError`.

Each error names the store's file, what is wrong and what to do; the kind
(:class:`StoreUnavailable`, :class:`StoreInvalid`, :class:`StoreFull`) tells a
caller which. Failures that are not the store's (a bug in a query) are left as
they are.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Final

from agentrt.errors import StoreError, StoreFull, StoreInvalid, StoreUnavailable

__all__ = [
    "damaged",
    "from_os_error",
    "from_sqlite_error",
    "full",
    "not_writable",
    "why_not_writable",
]

# Primary result codes (the low byte of an extended code), from sqlite3.h.
_PERM: Final = 3
_BUSY: Final = 5
_LOCKED: Final = 6
_READONLY: Final = 8
_IOERR: Final = 10
_CORRUPT: Final = 11
_FULL: Final = 13
_CANTOPEN: Final = 14
_PROTOCOL: Final = 15
_AUTH: Final = 23
_NOTADB: Final = 26

_RESTORE: Final = "restore it from a backup (`sqlite3 FILE .recover` may save what is left)"


def _nearest_folder(file: Path) -> Path:
    """The file's directory, or the nearest ancestor of it that exists."""
    folder = file.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def why_not_writable(file: Path) -> str | None:
    """Why this process cannot write ``file`` (and its ``-wal`` beside it), or ``None``."""
    folder = _nearest_folder(file)
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except OSError:
        pass
    if file.exists() and not os.access(file, os.W_OK):
        return "is not writable by this user"
    wal, shm = Path(f"{file}-wal"), Path(f"{file}-shm")
    logs_ready = all(p.exists() and os.access(p, os.W_OK) for p in (wal, shm))
    # SQLite creates FILE-wal and FILE-shm beside the file when it writes.
    if not logs_ready and not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be written: its directory {folder} is not writable by this user"
    return None


def _no_space_left(file: Path) -> bool:
    """Whether the file system under ``file`` has no block left for this user."""
    try:
        return os.statvfs(_nearest_folder(file)).f_bavail == 0
    except OSError:
        return False


def not_writable(store: str, reason: str) -> StoreUnavailable:
    """The error for a store this process may not write, ``reason`` as :func:`why_not_writable`."""
    if "read-only file system" in reason:
        fix = (
            "remount it read-write or use a store on writable storage; commands that only "
            "read (runs list, runs show, runs export, get) work on read-only media"
        )
    else:
        fix = "run as a user who may write there, or fix the permissions"
    return StoreUnavailable(store, reason, fix)


def full(store: str, detail: str) -> StoreFull:
    """The error for a full file system (or quota) under the store."""
    return StoreFull(
        store,
        f"has no space left on its file system ({detail})",
        "free space there and retry; what was committed before is kept, and an "
        "interrupted run continues with `agentrt resume RUN`",
    )


def damaged(store: str, detail: str) -> StoreInvalid:
    """The error for a store whose file is corrupt or cut short."""
    return StoreInvalid(store, f"is damaged ({detail})", _RESTORE.replace("FILE", store))


def from_os_error(exc: OSError, store: str) -> StoreError:
    """The store error an ``OSError`` on the store's path means."""
    path = Path(store)
    detail = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return full(store, detail)
    if exc.errno == errno.EROFS:
        return not_writable(store, "is on a read-only file system")
    if exc.errno == errno.ENOTDIR:
        return StoreUnavailable(
            store,
            "cannot be created: a part of its path is a file, not a directory",
            "choose a path whose directories are directories",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        reason = why_not_writable(path) or "cannot be opened by this user (permission denied)"
        return not_writable(store, reason)
    return StoreUnavailable(
        store, f"cannot be opened ({detail})", "check the path and the disk holding it"
    )


def from_sqlite_error(exc: sqlite3.Error, store: str, *, read_only: bool) -> StoreError | None:
    """The store error SQLite's ``exc`` means, or ``None`` when it is not the store's problem."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    detail = str(exc)
    if primary == _FULL:
        return full(store, detail)
    if primary == _CORRUPT:
        return damaged(store, f"truncated or corrupt: {detail}")
    if primary == _NOTADB:
        return StoreInvalid(
            store,
            "is not an agentrt store (not a SQLite database)",
            "point the store at an agentrt store, or at a path that does not exist yet",
        )
    if primary in (_BUSY, _LOCKED):
        return StoreUnavailable(
            store,
            f"is locked by another process ({detail})",
            "retry when it is done, or stop the process that holds it",
        )
    if primary == _READONLY and read_only:
        return StoreUnavailable(
            store, "was opened read-only", "use a command that opens it for writing"
        )
    if primary in (_READONLY, _CANTOPEN, _PERM, _AUTH):
        reason = why_not_writable(Path(store))
        if reason is not None:
            return not_writable(store, reason)
        return StoreUnavailable(
            store, f"cannot be opened ({detail})", "check the path, its permissions and the disk"
        )
    if primary in (_IOERR, _PROTOCOL):
        if _no_space_left(Path(store)):
            return full(store, detail)
        return StoreUnavailable(
            store,
            f"failed with an I/O error ({detail})",
            "check the disk and the file system holding it",
        )
    return None
