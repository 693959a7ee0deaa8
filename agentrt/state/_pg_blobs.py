"""The PostgreSQL store's blobs that runs refer to (scratch snapshots): ``blobs`` and
``run_blobs``.

A write that refers to a blob holds the blob table's advisory lock shared, and
gc's sweep holds it exclusive (:mod:`agentrt.state._pg_gc`): a blob gc judges
unreferenced is never one a concurrent write is about to refer to.
"""

from __future__ import annotations

import hashlib
from typing import Final

from agentrt.errors import NotFoundError
from agentrt.state._fence import check_fence
from agentrt.state._pg_ops import blob_lock_sql
from agentrt.state._pg_rows import Conn, execute, fetch_one
from agentrt.state.records import RunBlob

__all__ = ["BlobOps"]

# FOR SHARE: a takeover (which updates the row) waits until this write is committed.
_FENCE: Final = "SELECT pk, lease_owner, lease_token FROM runs WHERE id = %s FOR SHARE"
_INSERT_BLOB: Final = "INSERT INTO blobs (hash, data) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_REFER: Final = (
    "INSERT INTO run_blobs (run_pk, name, step, hash) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (run_pk, name, step) DO UPDATE SET hash = EXCLUDED.hash"
)
# length() of a bytea reads its size from the TOAST pointer: the bytes are not loaded.
_FIND: Final = (
    "SELECT rb.step, rb.hash, length(b.data) FROM runs AS r "
    "JOIN run_blobs AS rb ON rb.run_pk = r.pk JOIN blobs AS b ON b.hash = rb.hash "
    "WHERE r.id = %s AND rb.name = %s AND rb.step <= %s ORDER BY rb.step DESC LIMIT 1"
)
_LAST_STEP: Final = 2**62  # "any step"


class BlobOps:
    """Blob operations (coroutines of a borrowed connection)."""

    def __init__(self, blob_lock: int) -> None:
        """Writes refer to blobs under the advisory lock ``blob_lock``."""
        self.blob_lock = blob_lock

    async def put_blob(
        self,
        conn: Conn,
        data: bytes,
        run_id: str,
        name: str,
        step: int,
        owner: str | None,
        token: int | None,
    ) -> RunBlob:
        row = await fetch_one(conn, _FENCE, (run_id,))
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        pk, holder, holder_token = row
        check_fence(run_id, holder, holder_token, owner, token)
        digest = hashlib.sha256(data).digest()
        await execute(conn, blob_lock_sql(shared=True), (self.blob_lock,))
        await execute(conn, _INSERT_BLOB, (digest, data))
        await execute(conn, _REFER, (pk, name, step, digest))
        return RunBlob(run_id, name, step, digest.hex(), len(data))

    async def get_blob(self, conn: Conn, digest: str) -> bytes | None:
        try:
            key = bytes.fromhex(digest)
        except ValueError:
            return None
        row = await fetch_one(conn, "SELECT data FROM blobs WHERE hash = %s", (key,))
        return None if row is None else bytes(row[0])

    async def find_blob(
        self, conn: Conn, run_id: str, name: str, at_step: int | None
    ) -> RunBlob | None:
        step = _LAST_STEP if at_step is None else at_step
        found = await fetch_one(conn, _FIND, (run_id, name, step))
        if found is None:
            return None
        return RunBlob(run_id, name, found[0], bytes(found[1]).hex(), found[2])
