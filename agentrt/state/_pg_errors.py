"""PostgreSQL's errors as store errors: one line naming the store (never its
password), the problem and the fix; and the error of a missing driver."""

from __future__ import annotations

from typing import Final

from agentrt.errors import StoreError, StoreFull, StoreInvalid, StoreUnavailable, UsageError

__all__ = [
    "INSTALL",
    "TRANSIENT",
    "connection_lost",
    "driver_missing",
    "one_line",
    "store_error",
]

INSTALL: Final = "pip install 'agentrt[postgres]'"
"""What installs the PostgreSQL store's driver."""

TRANSIENT: Final = frozenset({"40001", "40P01"})
"""SQLSTATEs after which the whole transaction may simply run again (serialization
failure, deadlock detected): nothing of it was committed."""

_CHECK: Final = "check that PostgreSQL runs there and the URL (host, port, database, user)"


def driver_missing(exc: ImportError) -> UsageError:
    """The error of opening a PostgreSQL store where psycopg is not installed."""
    missing = exc.name or "psycopg"
    return UsageError(
        f"the PostgreSQL store needs psycopg 3 and psycopg-pool ({missing} is not "
        f"installed): {INSTALL}"
    )


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone (the server restarted or the network
    cut it), rather than the pool having none to give or the server refusing."""
    import psycopg
    from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

    if not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, PoolTimeout | PoolClosed | TooManyRequests):
        return False
    # No SQLSTATE: libpq lost the socket; 08: connection exceptions; 57P: the server
    # shutting down or terminating the backend.
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def one_line(exc: BaseException) -> str:
    """The server's or libpq's message on one line, without psycopg's prefix."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text.removeprefix("connection failed: ") or type(exc).__name__


def store_error(exc: BaseException, store: str, *, connecting: bool = False) -> StoreError | None:
    """``exc`` (an error of psycopg or its pool) as the store error it means, or
    ``None`` when it is not the store's problem (a bug to show as it is).

    Args:
        exc: The error.
        store: The store as it may be shown (see :func:`agentrt.state._pg_url.shown`).
        connecting: Whether it came while opening the store (no connection yet).
    """
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return StoreUnavailable(
            store,
            "gave no free connection in time (every connection busy, or the server unreachable)",
            f"{_CHECK}, or give the store more connections (?pool_max_size=N)",
        )
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    reason = one_line(exc)
    if state in ("53100", "53400"):  # disk_full, configuration_limit_exceeded
        return StoreFull(
            store,
            f"has no space left on the database server ({reason})",
            "free space on the server; what was committed is kept",
        )
    if state == "25006":  # read_only_sql_transaction
        return StoreUnavailable(
            store,
            "is read-only here (a standby, or default_transaction_read_only)",
            "point the store at the primary server",
        )
    if state == "42P07":  # duplicate_table
        return StoreInvalid(
            store,
            f"already has a table of another application with a name the store uses ({reason})",
            "give the store a schema of its own (?schema=agentrt)",
        )
    if state.startswith(("28", "3D")):  # authentication, unknown database
        return StoreUnavailable(store, f"refuses the connection: {reason}", _CHECK)
    if state == "42501":  # insufficient_privilege
        return StoreUnavailable(
            store,
            f"refuses this user what the store needs ({reason})",
            "grant the user CREATE and USAGE on the schema and all rights on its tables, "
            "or connect as their owner",
        )
    if isinstance(exc, psycopg.OperationalError):
        if connecting:
            return StoreUnavailable(store, f"cannot be reached: {reason}", _CHECK)
        return StoreUnavailable(
            store,
            f"lost its connection to the server ({reason})",
            "the store reconnects on its next operation; if this persists, " + _CHECK,
        )
    return None
