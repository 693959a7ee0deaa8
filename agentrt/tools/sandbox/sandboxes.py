"""The sandboxes of one Runtime: probed backends, reaped leftovers, scratch locks.

A Runtime (through its tool factory) makes one :class:`Sandboxes` and hands it
to every code tool it builds, so that each backend is probed once (probing
starts sandboxes), what a crashed runtime left behind is reaped once, and two
calls of one run never move its scratch files at the same time, even from two
Tools. It is closed with the Runtime; nothing of it outlives that.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from pathlib import Path

from agentrt.tools.sandbox.base import ProbeResult, SandboxBackend
from agentrt.tools.sandbox.selection import choose_backend, probe_all, probe_backend

__all__ = ["Sandboxes"]


class Sandboxes:
    """The sandbox backends of one Runtime, and what its code tools coordinate on.

    Args:
        workdir: Where the backends keep their files (bundles, artifacts,
            scratch volumes): the settings' ``sandbox_dir``.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._probes: dict[str, tuple[SandboxBackend | None, ProbeResult]] = {}
        self._probing: dict[str, asyncio.Lock] = {}
        self._reaped: set[str] = set()
        # Weak: a lock lives while a call of its run holds or waits for it.
        self._scratch_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._closed = False

    async def probe(self, name: str) -> tuple[SandboxBackend | None, ProbeResult]:
        """Backend ``name`` and its probe result, probed on first use only."""
        if name in self._probes:
            return self._probes[name]
        async with self._probing.setdefault(name, asyncio.Lock()):
            if name not in self._probes:
                self._probes[name] = await probe_backend(name, self.workdir)
        return self._probes[name]

    async def probe_all(self) -> list[ProbeResult]:
        """Every registered backend's probe result, strongest first."""
        return await probe_all(self.probe)

    async def choose(
        self, preference: str, *, allow_unsafe: bool, policy_needs_network_allowlist: bool
    ) -> SandboxBackend:
        """The backend for model-written code (see :func:`~.selection.choose_backend`).

        The first time a backend is chosen, what a crashed runtime left of its
        sandboxes is removed.
        """
        if self._closed:
            raise RuntimeError("the runtime's sandboxes are closed")
        backend = await choose_backend(
            preference,
            allow_unsafe=allow_unsafe,
            policy_needs_network_allowlist=policy_needs_network_allowlist,
            probe=self.probe,
        )
        if backend.name not in self._reaped:
            self._reaped.add(backend.name)
            await backend.reap()
        return backend

    def scratch_lock(self, scratch: Path) -> asyncio.Lock:
        """The lock the calls of the run whose scratch directory is ``scratch`` take turns on.

        Calls of one run share its scratch directory, whose files move into a
        sandbox for the call: two calls at once would each see half of them.
        """
        key = str(scratch)
        lock = self._scratch_locks.get(key)
        if lock is None:
            lock = self._scratch_locks[key] = asyncio.Lock()
        return lock

    def remove_old_artifacts(self, cutoff: float) -> int:
        """Delete full-output artifacts of sandboxed calls written before ``cutoff``.

        Blocking (it walks a directory): call it in a thread. Returns how many
        files were removed.
        """
        folder = self.workdir / "artifacts"
        removed = 0
        for path in folder.glob("*") if folder.exists() else []:
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    async def close(self) -> None:
        """Forget the probes; choosing a backend afterwards is an error."""
        self._closed = True
        self._probes.clear()
        self._probing.clear()
