"""Each run's scratch directory: files in and out of sandboxes, part of the run's state.

After every step of a sandboxed (``code``) tool the directory is snapshotted,
so that a fork from step N starts from the files as they were at step N.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ScratchSpace"]

log = logging.getLogger(__name__)


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """The ``data`` filter, but a member it refuses is left out instead of failing the
    whole restore: snapshots taken before files were normalised may hold FIFOs or
    links out of the directory, and a fork must still get every ordinary file."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        log.warning("snapshot member %s left out: %s", member.name, exc)
        return None


class ScratchSpace:
    """Scratch directories and their per-step snapshots under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir_of(self, run_id: str) -> Path:
        """The run's scratch directory (created on first use)."""
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _snapshots(self, run_id: str) -> Path:
        return self.root / f"{run_id}.steps"

    def snapshot(self, run_id: str, step: int) -> Path:
        """Save the scratch directory as it is after ``step``. Blocking: run in a thread."""
        dest_dir = self._snapshots(run_id)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{step:08d}.tar"
        partial = dest.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(self.dir_of(run_id), arcname=".")
        partial.replace(dest)  # a crash never leaves a half-written snapshot in place
        return dest

    def restore(self, parent_run: str, step: int, into_run: str) -> bool:
        """Fill ``into_run``'s scratch with ``parent_run``'s files as of ``step``.

        Returns False (leaving it empty) when the parent had no snapshot by then.
        Blocking: run in a thread.
        """
        snaps = self._snapshots(parent_run)
        found = (
            sorted(p for p in snaps.glob("*.tar") if int(p.stem) <= step) if snaps.exists() else []
        )
        target = self.dir_of(into_run)
        if not found:
            return False
        with tarfile.open(found[-1]) as tar:
            tar.extractall(target, filter=_safe_member)
        return True

    def remove(self, run_ids: Iterable[str]) -> int:
        """Delete the scratch directories and snapshots of ``run_ids`` (the runs gc
        removed); return how many paths went. Blocking: run in a thread."""
        removed = 0
        for run_id in run_ids:
            for path in (self.root / run_id, self._snapshots(run_id)):
                if path.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        return removed
