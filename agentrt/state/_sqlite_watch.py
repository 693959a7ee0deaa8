"""How SQLite stores in different processes tell each other that they wrote runs.

Beside the database ``agentrt.db`` is a folder ``agentrt.db-notify/`` while a
store of it is open. Each open, writable store has a file of its own there
(``<pid>-<random>``), and after each transaction that wrote runs, once it is
committed, writes one byte to it. A watch of another store hears that from the
kernel (inotify on the folder; the file's name says who wrote, so a store
ignores its own) and costs no read of the database. Where the kernel cannot
tell (another OS, no inotify instance left), the folder's files are looked at
twice a second instead. The last store to close removes the folder, as SQLite
removes its ``-wal`` and ``-shm`` files.

Why not the write-ahead log itself: the kernel reports its first write of a
commit before the commit is visible to readers, and a store's own commits
write it too, so each would need reads to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final

from agentrt.state.records import GcResult, RunRecord
from agentrt.state.watch import QUEUE

__all__ = [
    "POLL_INTERVAL_S",
    "NotifyFile",
    "NotifyWatcher",
    "notify_folder",
    "touched_claimed",
    "touched_created",
    "touched_leased",
    "touched_one",
    "touched_released",
    "touched_removed",
]

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 0.5
"""How often the fallback looks at the folder, where the kernel cannot tell."""

# A file left by a process that died is removed once this old: not sooner, since a
# pid may belong to another pid namespace sharing the folder.
_STALE_S: Final = 24 * 3600.0


def notify_folder(database: Path) -> Path:
    """The folder beside ``database`` where its stores tell of their writes."""
    return database.with_name(database.name + "-notify")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _sweep(folder: Path, now: float) -> None:
    """Remove files of processes that died long ago (a crash leaves its file)."""
    # Closed however it ends: another store may remove the folder meanwhile.
    with os.scandir(folder) as entries:
        for entry in entries:
            pid, _, _ = entry.name.partition("-")
            with contextlib.suppress(OSError, ValueError):
                if now - entry.stat().st_mtime > _STALE_S and not _alive(int(pid)):
                    os.unlink(entry.path)


class NotifyFile:
    """A store's own file in the notify folder: written after each commit of runs.

    Used from the store's connection thread only.
    """

    def __init__(self, database: Path) -> None:
        """Prepare the file of a store of ``database`` (made by :meth:`open`)."""
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path = notify_folder(database) / self.name
        self._fd: int | None = None

    def open(self) -> None:
        """Make the folder and the file; a failure only costs other processes' watches
        their wake-up (logged), never the store."""
        for attempt in range(3):
            try:
                self.path.parent.mkdir(exist_ok=True)
                if attempt == 0:
                    _sweep(self.path.parent, time.time())
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
                return
            except FileNotFoundError:
                continue  # the last store to close removed the folder meanwhile
            except OSError as exc:
                log.warning("other processes will not hear this store's writes: %s", exc)
                return

    def touch(self) -> None:
        """Tell other processes' watches that runs were written (after the commit)."""
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(fd, b"\n", 0)

    def close(self) -> None:
        """Close and remove the file, and the folder if it is left empty."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            _remove_if_empty(self.path.parent)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: another store is open
        os.rmdir(folder)


# IN_MODIFY | IN_CREATE | IN_MOVED_TO: a store's file written or made.
_MASK: Final = 0x00000002 | 0x00000100 | 0x00000080
_IN_IGNORED: Final = 0x00008000  # the watch ended: the folder was removed


def _open_inotify(folder: Path) -> Any | None:
    """An inotify instance watching ``folder``, or ``None`` where there is none."""
    try:
        from inotify_simple import INotify
    except ImportError:  # not Linux: the dependency is installed only there
        return None
    try:
        folder.mkdir(exist_ok=True)
        inotify = INotify(nonblocking=True)
    except OSError as exc:  # a read-only folder; the user's inotify instances used up
        log.info("no inotify on %s (%s); watching by polling", folder, exc)
        return None
    try:
        inotify.add_watch(folder, _MASK)
    except OSError as exc:
        inotify.close()
        log.info("cannot watch %s with inotify (%s); watching by polling", folder, exc)
        return None
    return inotify


def _signatures(folder: Path, own: str) -> frozenset[tuple[str, int, int]]:
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return frozenset()
    found = set()
    for entry in entries:
        if entry.name != own:
            with contextlib.suppress(OSError):
                info = entry.stat()
                found.add((entry.name, info.st_ino, info.st_mtime_ns))
    return frozenset(found)


class NotifyWatcher:
    """Calls back when another store of the database tells of a write (the
    :class:`~agentrt.state.watch.ForeignWrites` of a SQLite store)."""

    def __init__(self, database: Path, own: str) -> None:
        """Watch ``database``'s notify folder, ignoring the file named ``own``."""
        self.folder = notify_folder(database)
        self.own = own
        self.kind = "off"  # "inotify" or "poll" while started, for diagnostics and tests
        self._inotify: Any | None = None
        self._poller: asyncio.Task[None] | None = None
        self._on_write: Callable[[Collection[str] | None], None] | None = None

    async def start(self, on_write: Callable[[Collection[str] | None], None]) -> None:
        """Call ``on_write(None)`` on this event loop after each write another store
        tells of (which runs it wrote is not said)."""
        self._on_write = on_write
        # On the loop, not in a thread: it is two quick system calls, and an open
        # finished by a thread after its caller was cancelled would leak the instance.
        inotify = _open_inotify(self.folder)
        if inotify is not None:
            self._inotify = inotify
            asyncio.get_running_loop().add_reader(inotify.fileno(), self._readable)
            self.kind = "inotify"
        else:
            seen = await asyncio.to_thread(_signatures, self.folder, self.own)
            self._poller = asyncio.create_task(self._poll(seen), name="agentrt-notify-poll")
            self.kind = "poll"

    async def stop(self) -> None:
        """Stop watching; release the inotify instance or the polling task."""
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            asyncio.get_running_loop().remove_reader(inotify.fileno())
            inotify.close()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        self.kind = "off"
        await asyncio.to_thread(_remove_if_empty, self.folder)

    def _readable(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        events = inotify.read(timeout=0)
        if any(event.mask & _IN_IGNORED for event in events):
            # The last writable store closed and took the folder: watch it anew.
            try:
                self.folder.mkdir(exist_ok=True)
                inotify.add_watch(self.folder, _MASK)
            except OSError as exc:
                log.info("lost the watch on %s (%s)", self.folder, exc)
        own = self.own
        if any(event.name and event.name != own for event in events):
            self._fire()

    async def _poll(self, seen: frozenset[tuple[str, int, int]]) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            now = await asyncio.to_thread(_signatures, self.folder, self.own)
            if now - seen:
                self._fire()
            seen = now

    def _fire(self) -> None:
        if self._on_write is not None:
            self._on_write(None)


# What each write to runs touched, from its result: the runs its store's watches hear of.
def touched_one(run_id: str) -> Callable[[object], tuple[str]]:
    return lambda _: (run_id,)


def touched_created(result: tuple[RunRecord, bool]) -> tuple[str, ...]:
    run, fresh = result
    if not fresh:
        return ()
    return (run.id,) if run.lease_owner is not None else (run.id, QUEUE)


def touched_released(run_id: str) -> Callable[[object], tuple[str, str]]:
    """A lease given up, or a run set going again by a person's decision: the queue
    may have work."""
    return lambda _: (run_id, QUEUE)


def touched_leased(result: RunRecord | None) -> tuple[str, ...]:
    return () if result is None else (result.id,)


def touched_claimed(result: list[RunRecord]) -> list[str]:
    return [run.id for run in result]


def touched_removed(result: GcResult) -> tuple[str, ...]:
    return result.run_ids
