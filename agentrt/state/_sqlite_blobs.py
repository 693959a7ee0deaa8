"""The SQLite store's blobs that runs refer to (scratch snapshots): ``blobs`` and
``run_blobs``.

Like the other operations, these run on the store's writer thread, inside the
transaction it opens for their batch.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Final

from agentrt.errors import NotFoundError
from agentrt.state._fence import check_fence
from agentrt.state.records import RunBlob

__all__ = ["BlobOps"]

_INSERT_BLOB: Final = "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)"
_REFER: Final = "INSERT OR REPLACE INTO run_blobs (run_pk, name, step, hash) VALUES (?, ?, ?, ?)"
# length() of a blob is read from its record header: the bytes are not loaded.
_FIND: Final = (
    "SELECT rb.step, rb.hash, length(b.data) FROM run_blobs AS rb "
    "JOIN blobs AS b ON b.hash = rb.hash "
    "WHERE rb.run_pk = ? AND rb.name = ? AND rb.step <= ? ORDER BY rb.step DESC LIMIT 1"
)
_LAST_STEP: Final = 2**62  # "any step"


class BlobOps:
    """Blob operations on one connection (writer thread only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap ``conn``."""
        self.conn = conn

    def put_blob(
        self, data: bytes, run_id: str, name: str, step: int, owner: str | None, token: int | None
    ) -> RunBlob:
        row = self.conn.execute(
            "SELECT pk, lease_owner, lease_token FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, holder, holder_token = row
        check_fence(run_id, holder, holder_token, owner, token)
        digest = hashlib.sha256(data).digest()
        self.conn.execute(_INSERT_BLOB, (digest, data))
        self.conn.execute(_REFER, (pk, name, step, digest))
        return RunBlob(run_id, name, step, digest.hex(), len(data))

    def get_blob(self, digest: str) -> bytes | None:
        try:
            key = bytes.fromhex(digest)
        except ValueError:
            return None
        row = self.conn.execute("SELECT data FROM blobs WHERE hash = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def find_blob(self, run_id: str, name: str, at_step: int | None) -> RunBlob | None:
        row = self.conn.execute("SELECT pk FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        step = _LAST_STEP if at_step is None else at_step
        found = self.conn.execute(_FIND, (row[0], name, step)).fetchone()
        if found is None:
            return None
        return RunBlob(run_id, name, found[0], bytes(found[1]).hex(), found[2])
