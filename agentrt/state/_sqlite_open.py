"""How the SQLite store gets its connection: checked, created atomically, or read-only.

:func:`open_connection` is the only way the store gets a connection. Before
SQLite sees a file it is checked: a directory or an empty file is refused with
a :class:`StoreError`; a file that is not SQLite, or is damaged or cut short, is
refused on SQLite's word. Either way the file is left as it is. A new store is
built under a temporary name and linked into place complete, so agentrt never
leaves a half-made store behind; a 0-byte file is therefore never one of ours,
and is refused rather than silently taken as a new store.

A read-only connection never migrates nor changes anything (SQLite's
``query_only``, or ``mode=ro`` where the process may not write, down to reading
the file as immutable when not even SQLite's ``-shm`` index can be created), so
commands that only read work on read-only media.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import quote

from agentrt.errors import StoreError, StoreInvalid, StoreUnavailable, UsageError
from agentrt.state._sqlite_errors import (
    from_os_error,
    from_sqlite_error,
    not_writable,
    why_not_writable,
)
from agentrt.state._sqlite_schema import (
    APPLICATION_ID,
    MEMORY,
    check_identity,
    check_version,
    migrate,
)

__all__ = ["adopt_connection", "open_connection"]

_JOURNAL_SIZE_LIMIT: Final = 8 * 1024 * 1024


def open_connection(
    target: str, synchronous: str, timeout: float, *, read_only: bool = False
) -> sqlite3.Connection:
    """Connect to the store at ``target``: checked, configured and (unless read-only) migrated.

    Args:
        target: A file path or :data:`MEMORY`.
        synchronous: The ``PRAGMA synchronous`` level, ``"NORMAL"`` or ``"FULL"``.
        timeout: Seconds to wait for another process's write lock.
        read_only: Open without writing anything. A file that does not exist
            reads as an empty store (nothing is created).

    Returns:
        A connection in autocommit mode (``isolation_level=None``); the caller
        owns it and must use it from one thread.

    Raises:
        StoreError: The path cannot hold a store, the file is not an agentrt
            store this version can use, or it cannot be written (or read) here.
    """
    if target == MEMORY:
        return _configured(_connect(MEMORY, timeout), MEMORY, synchronous, writing=True)
    if not target:
        raise StoreUnavailable(
            target,
            "is empty",
            "give the store a file path (--store or AGENTRT_STORE), or unset it for the default",
        )
    file = Path(target).expanduser()
    exists = _check_file(file, target)
    if read_only:
        if not exists:  # nothing stored yet; reading must not create the file
            return _configured(_connect(MEMORY, timeout), MEMORY, synchronous, writing=True)
        return _open_read_only(file, target, timeout)
    reason = why_not_writable(file)
    if reason is not None:
        raise not_writable(target, reason)
    if not exists:
        _create(file, target, synchronous, timeout)
    conn = _connect(str(file), timeout)
    try:
        check_identity(conn, target)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc, target, read_only=False) from exc
        raise
    try:
        return _configured(conn, target, synchronous, writing=True)
    except sqlite3.Error as exc:
        raise _store_error(exc, target, read_only=False) from exc


def adopt_connection(
    conn: sqlite3.Connection, synchronous: str, *, read_only: bool, close: bool
) -> tuple[sqlite3.Connection, str]:
    """Make a connection the caller gave the store's: checked, configured, migrated.

    An empty database (no tables, no marker) is taken as a new store: the caller
    chose it. Anything else must be an agentrt store, as for a path.

    Args:
        conn: The connection, to be used from this thread from now on.
        synchronous: The ``PRAGMA synchronous`` level.
        read_only: Check the schema instead of migrating it.
        close: Whether the store owns ``conn`` (and closes it when it is refused).

    Returns:
        The connection (in autocommit mode) and the file its main database is,
        or :data:`MEMORY` when it has none.

    Raises:
        UsageError: The connection cannot be used from the store's thread.
        StoreError: Its database is not an agentrt store this version can use.
    """
    try:
        conn.isolation_level = None  # the store begins and commits its own transactions
        file = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    except sqlite3.ProgrammingError as exc:
        if close:
            conn.close()
        raise UsageError(
            f"the store cannot use this SQLite connection from its own thread ({exc}); "
            "make it with check_same_thread=False, or give the store a function that "
            "makes the connection"
        ) from exc
    store = file or MEMORY
    try:
        new = (
            conn.execute("PRAGMA application_id").fetchone()[0] == 0
            and not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        )
        if new and read_only:
            raise StoreInvalid(
                store, "is an empty database", "open it once without read_only to make a store"
            )
        if new:
            # auto_vacuum only takes effect before the first table is created.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        else:
            check_identity(conn, store)
        return _configured(conn, store, synchronous, writing=not read_only, close=close), store
    except BaseException as exc:
        if close:
            conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc, store, read_only=read_only) from exc
        raise


def _connect(path: str, timeout: float, *, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(
        path, timeout=timeout, isolation_level=None, cached_statements=256, uri=uri
    )


def _store_error(exc: sqlite3.Error, store: str, *, read_only: bool) -> BaseException:
    return from_sqlite_error(exc, store, read_only=read_only) or exc


def _check_file(file: Path, store: str) -> bool:
    """Whether a store file exists at ``file``; refuse what cannot be one.

    Only ``stat``: opening and closing the file here would drop the POSIX locks
    that this process's other SQLite connections to it hold (they are per
    process), and let another process checkpoint under their feet. What the file
    holds is SQLite's to judge (not a database, damaged, cut short).

    Raises:
        StoreError: The path is a directory or not a regular file, or the file is
            empty.
    """
    try:
        info = file.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise from_os_error(exc, store) from exc
    if stat.S_ISDIR(info.st_mode):
        raise StoreUnavailable(
            store, "is a directory", f"name a file for the store, e.g. {file / 'agentrt.db'}"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StoreUnavailable(store, "is not a regular file", "name a regular file")
    if info.st_size == 0:
        raise StoreInvalid(
            store,
            "is an empty file (0 bytes), not an agentrt store (agentrt never leaves one)",
            "delete it to create a new store there, or point the store at your store file",
        )
    if not os.access(file, os.R_OK):
        raise StoreUnavailable(
            store,
            "cannot be read by this user (permission denied)",
            "run as a user who may read it, or fix its permissions",
        )
    return True


def _create(file: Path, store: str, synchronous: str, timeout: float) -> None:
    """Build a new, migrated store beside ``file`` and link it into place whole."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, store) from exc
    temp = file.with_name(f".{file.name}.{secrets.token_hex(4)}.new")
    try:
        conn = _connect(str(temp), timeout)
        try:
            # auto_vacuum only takes effect before the first table is created.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            _configured(conn, store, synchronous, writing=True)
        finally:
            conn.close()  # the last connection folds the WAL into the file
        _link_new(temp, file)
    except sqlite3.Error as exc:
        raise _store_error(exc, store, read_only=False) from exc
    except OSError as exc:
        raise from_os_error(exc, store) from exc
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(f"{temp}{suffix}")


def _link_new(temp: Path, file: Path) -> None:
    try:
        os.link(temp, file)
    except FileExistsError:
        pass  # another process created the store first: use theirs
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links on this file system: a rename, which could only replace a
        # store created in the instant between the check and here.
        if not file.exists():
            os.replace(temp, file)


def _configured(
    conn: sqlite3.Connection, store: str, synchronous: str, *, writing: bool, close: bool = True
) -> sqlite3.Connection:
    """Apply the PRAGMAs the store relies on and migrate (``writing``) or check the schema.

    On failure ``conn`` is closed, unless ``close`` is false (the caller's connection).
    """
    try:
        if writing:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if store != MEMORY and str(mode).lower() != "wal":
                raise StoreUnavailable(
                    store,
                    f"cannot use WAL mode here (got {mode!r})",
                    "put the store on a local file system",
                )
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys = ON")
        if writing:
            migrate(conn, store)
        else:
            check_version(conn, store, writing=False)
    except BaseException:
        if close:
            conn.close()
        raise
    return conn


def _open_read_only(file: Path, store: str, timeout: float) -> sqlite3.Connection:
    """A connection that changes nothing: the first of these ways that works here."""
    uri = f"file:{quote(str(file.resolve()))}?mode=ro"
    openers: list[Callable[[], sqlite3.Connection]] = [
        lambda: _reader(_connect(uri, timeout, uri=True), store),
        lambda: _immutable(file, uri, store, timeout),
    ]
    if why_not_writable(file) is None:
        # Where this process may write, a normal connection that SQLite keeps from
        # changing anything (query_only): on close it removes FILE-wal and FILE-shm
        # as usual, where a mode=ro one would leave them behind, owned by whoever
        # read last.
        openers.insert(0, lambda: _reader(_connect(str(file), timeout), store, query_only=True))
    for i, opener in enumerate(openers):
        try:
            return opener()
        except sqlite3.Error as exc:
            error = _store_error(exc, store, read_only=True)
            # Not SQLite's trouble with FILE-shm (a damaged file, a bug): no other way helps.
            retry = isinstance(error, StoreError) and not isinstance(error, StoreInvalid)
            if i == len(openers) - 1 or not retry:
                raise error from exc
    raise AssertionError("unreachable")


def _immutable(file: Path, uri: str, store: str, timeout: float) -> sqlite3.Connection:
    """Read ``file`` as immutable, where SQLite cannot create FILE-shm (read-only media or
    directory, a full disk).

    With no FILE-wal, every committed write is in the file itself and no process
    has it open for writing, so nothing can change under the reader.
    """
    wal = Path(f"{file}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreUnavailable(
            store,
            f"cannot be read here: its write-ahead log {wal} holds writes that SQLite "
            "needs a -shm file beside it to read, and it cannot create one",
            "open it once where it is writable (any agentrt command there folds the log in)",
        )
    return _reader(_connect(uri + "&immutable=1", timeout, uri=True), store)


def _reader(
    conn: sqlite3.Connection, store: str, *, query_only: bool = False
) -> sqlite3.Connection:
    """``conn`` checked to be a store of this schema version; closed if it is not."""
    try:
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        check_identity(conn, store)
    except BaseException:
        conn.close()
        raise
    return _configured(conn, store, "NORMAL", writing=False)
