"""Each run's scratch directory: files in and out of sandboxes, part of the run's state.

The directory lives on the host that runs the run; its snapshots live in the
store. After every step of a sandboxed (``code``) tool the directory is packed
into a tar (its files are already normalised by the sandbox's copy-back, and
the run's disk quota bounds its size) and stored as a content-addressed blob
that the run refers to as ``scratch`` as of that step. So a fork from step N
starts from the files as they were at step N, and a run resumed on another
host, or from a copy of the store without its scratch folder, gets its files
back before its next code step.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from agentrt.state import RunBlob, Store

__all__ = ["SCRATCH", "ScratchSpace"]

log = logging.getLogger(__name__)

SCRATCH: Final = "scratch"
"""The name a run's scratch snapshots have among its blobs."""


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """The ``data`` filter, but a member it refuses is left out instead of failing the
    whole restore: snapshots taken before files were normalised may hold FIFOs or
    links out of the directory, and a fork must still get every ordinary file."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        log.warning("snapshot member %s left out: %s", member.name, exc)
        return None


def _pack(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


class ScratchSpace:
    """Runs' scratch directories under one root on this host, and their snapshots in
    the store.

    Beside each run's directory a small file (``<run>.snapshot``) names the
    snapshot the directory holds, so a directory that another host has moved
    past is made anew from the store.
    """

    def __init__(self, root: Path, store: Store) -> None:
        """Directories under ``root``; snapshots in ``store``."""
        self.root = root
        self.store = store

    def dir_of(self, run_id: str) -> Path:
        """The run's scratch directory (created on first use)."""
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _marker(self, run_id: str) -> Path:
        return self.root / f"{run_id}.snapshot"

    def _held(self, run_id: str) -> str | None:
        with contextlib.suppress(OSError):
            return self._marker(run_id).read_text().strip()
        return None

    def _mark(self, run_id: str, digest: str) -> None:
        marker = self._marker(run_id)
        partial = marker.with_name(f".{marker.name}.{secrets.token_hex(4)}")
        partial.write_text(digest)
        partial.replace(marker)

    async def prepare(self, run_id: str) -> Path:
        """The run's scratch directory, holding its latest snapshot's files (before a
        code step).

        When this host's directory is not that snapshot (missing: the run ran
        elsewhere, or the store was copied without its scratch folder; or left
        behind by a later step on another host), it is made from the store. A
        run with no snapshot keeps whatever its directory holds.
        """
        latest = await self.store.find_blob(run_id, SCRATCH)
        path = self.dir_of(run_id)
        if latest is None or await asyncio.to_thread(self._held, run_id) == latest.digest:
            return path
        data = await self.store.get_blob(latest.digest)
        if data is not None:
            await asyncio.to_thread(self._unpack, run_id, data, latest.digest)
        return path

    async def snapshot(self, run_id: str, step: int, *, owner: str | None = None) -> RunBlob:
        """Store the run's files as they are after ``step`` (fenced by ``owner``'s lease)."""
        data = await asyncio.to_thread(_pack, self.dir_of(run_id))
        blob = await self.store.put_blob(data, run_id=run_id, name=SCRATCH, step=step, owner=owner)
        await asyncio.to_thread(self._mark, run_id, blob.digest)
        return blob

    async def restore(self, parent_run: str, step: int, into_run: str) -> bool:
        """Fill ``into_run``'s scratch with ``parent_run``'s files as of ``step`` (a fork),
        and make ``into_run`` refer to that snapshot itself.

        Returns False (leaving it empty) when the parent had no snapshot by then.
        """
        self.dir_of(into_run)
        found = await self.store.find_blob(parent_run, SCRATCH, at_step=step)
        data = None if found is None else await self.store.get_blob(found.digest)
        if data is None:
            return False
        blob = await self.store.put_blob(data, run_id=into_run, name=SCRATCH, step=step)
        await asyncio.to_thread(self._unpack, into_run, data, blob.digest)
        return True

    def _unpack(self, run_id: str, data: bytes, digest: str) -> None:
        """Put the snapshot's files in place of the run's directory, whole (blocking)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{run_id}.{secrets.token_hex(4)}"
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(staging, filter=_safe_member)
        path, old = self.root / run_id, self.root / f".{run_id}.old"
        shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, old)
        os.rename(staging, path)
        shutil.rmtree(old, ignore_errors=True)
        self._mark(run_id, digest)

    def remove(self, run_ids: Iterable[str]) -> int:
        """Delete the scratch directories of ``run_ids`` (the runs gc removed) and what
        lies beside them; return how many paths went. Blocking: run in a thread."""
        removed = 0
        for run_id in run_ids:
            # <run>.steps: snapshots as files, as earlier versions kept them.
            for name in (run_id, f"{run_id}.snapshot", f"{run_id}.steps"):
                path = self.root / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink(missing_ok=True)
                else:
                    continue
                removed += 1
        return removed
