"""A warm pool of ready, never-used sandboxes, and the scratch volumes they use.

"Ready" is whatever a backend's ``create`` returns: for bubblewrap and process,
a launcher that is already running inside its namespaces, cgroup and rlimits,
blocked reading its command from a pipe. Taking one from the pool costs a list
pop; running a command then costs one write. Each sandbox is handed out once
and never returned to the pool; the pool refills in the background after each
hand-out, and creates one on demand when it is empty.

Scratch: a pooled sandbox is created before anyone knows which run will use
it, so it cannot bind-mount the run's scratch directory. Instead each pooled
sandbox gets its own volume (:mod:`.volume`: ``<workdir>/scratch/agentrt-<pid>-<id>/root``,
bound at ``/scratch``), and :class:`PooledSandbox` copies the run's files into it
before the command (:meth:`PooledSandbox.adopt`, which also sets the call's disk
quota) and, once every process of the sandbox is gone, copies what the command
left back, normalised, in place of the run's directory (:meth:`PooledSandbox.collect`).
A call past its quota leaves the run's directory as it was. The run's own
directory is never written to while the call runs, so a crash at any moment
leaves it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agentrt._owner import owner_is_dead
from agentrt.tools.sandbox.base import (
    Prestart,
    Sandbox,
    SandboxBackend,
    SandboxEvent,
    SandboxLimits,
    SandboxPolicy,
)
from agentrt.tools.sandbox.files import MAX_DEPTH, copy_in, copy_out, measure, replace_dir
from agentrt.tools.sandbox.identity import SandboxUser, sandbox_user
from agentrt.tools.sandbox.volume import DiskQuota, ScratchVolume, unmount

__all__ = ["Collected", "PooledSandbox", "PoolKey", "SandboxPool", "reap_scratch", "scratch_dir"]

log = logging.getLogger(__name__)

_HOME = re.compile(r"^agentrt-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two sandboxes interchangeable: everything but the scratch directory."""

    backend: str
    network: str | tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    read_paths: tuple[str, ...]
    limits: SandboxLimits
    prestart: Prestart | None = None

    @classmethod
    def of(
        cls,
        backend: str,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        prestart: Prestart | None = None,
    ) -> PoolKey:
        """The key of sandboxes of ``backend`` made with ``policy``, ``limits``, ``prestart``."""
        env = tuple(sorted(policy.env.items()))
        return cls(backend, policy.network, env, policy.read_paths, limits, prestart)


async def _new_home(workdir: Path, user: SandboxUser) -> tuple[Path, ScratchVolume]:
    home = workdir / "scratch" / f"agentrt-{os.getpid()}-{secrets.token_hex(6)}"
    await asyncio.to_thread(home.mkdir, mode=0o700, parents=True)
    try:
        volume = await asyncio.to_thread(ScratchVolume.create, home / "root", user)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, home, True)
        raise
    return home, volume


async def _remove_home(home: Path, volume: ScratchVolume) -> None:
    await asyncio.to_thread(volume.destroy)
    await asyncio.to_thread(shutil.rmtree, home, True)


@contextlib.asynccontextmanager
async def scratch_dir(workdir: Path, user: SandboxUser) -> AsyncIterator[ScratchVolume]:
    """A fresh, empty scratch volume of a backend's ``workdir`` (with a small quota),
    removed afterwards.

    Named like a pooled sandbox's, so :func:`reap_scratch` removes it if the
    runtime dies while it exists.
    """
    home, volume = await _new_home(workdir, user)
    try:
        await asyncio.to_thread(volume.limit, 16 << 20, 256)
        yield volume
    finally:
        await _remove_home(home, volume)


@dataclass(frozen=True, slots=True)
class Collected:
    """What came back from a sandbox's scratch volume after a call."""

    exceeded: str | None = None  # why the call's files were discarded, if they were
    dropped: tuple[str, ...] = ()  # entries left out by normalisation, with the reason
    bytes: int = 0
    entries: int = 0


@dataclass(slots=True)
class PooledSandbox:
    """A sandbox handed out by a pool, with its own scratch volume."""

    sandbox: Sandbox
    home: Path  # holds ``root``, the volume the sandbox sees as ``/scratch``
    volume: ScratchVolume

    @property
    def scratch(self) -> Path:
        """The directory the sandbox sees as ``/scratch``."""
        return self.volume.path

    async def adopt(self, run_scratch: Path | None, quota: DiskQuota) -> None:
        """Copy the run's files in, and give the call its quota: what it may add, capped
        by what the run may hold in all."""

        def copy() -> None:
            volume = self.volume
            run = quota.run_total()
            volume.limit(run.bytes, run.entries)
            if run_scratch is not None:
                if self.home.resolve().is_relative_to(run_scratch.resolve()):
                    raise ValueError(f"the run's scratch {run_scratch} contains the sandbox's")
                owner = None if volume.owner.is_runtime else (volume.owner.uid, volume.owner.gid)
                copy_in(run_scratch, volume.path, owner)
            volume.grow_by(quota.call_bytes, quota.call_entries, cap=run)

        await asyncio.to_thread(copy)

    async def collect(self, run_scratch: Path, quota: DiskQuota) -> Collected:
        """Copy the volume's files back, normalised, in place of the run's directory.

        Call it once no process of the sandbox is left (after ``terminate``). A
        volume past the call's or the run's quota is not copied: the run's
        directory stays as it was, and the reason says which quota.
        """

        def copy() -> Collected:
            volume = self.volume
            if volume.exceeded():
                return Collected(exceeded=quota.describe_call())
            run = quota.run_total()
            tally = measure(volume.path, max_bytes=run.bytes, max_entries=run.entries)
            if tally.too_deep:
                return Collected(exceeded=f"directories nested deeper than {MAX_DEPTH} levels")
            if tally.over(run.bytes, run.entries):
                return Collected(exceeded=quota.describe_run())
            staging = run_scratch.with_name(f".{run_scratch.name}.{secrets.token_hex(4)}")
            try:
                copied = copy_out(volume.path, staging)
                replace_dir(run_scratch, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return Collected(None, tuple(copied.dropped), copied.bytes, copied.entries)

        return await asyncio.to_thread(copy)

    async def release(self) -> None:
        """Terminate the sandbox and delete its scratch volume."""
        try:
            await self.sandbox.terminate()
        finally:
            await _remove_home(self.home, self.volume)


class SandboxPool:
    """Ready sandboxes of one :class:`PoolKey`, refilled in the background.

    Args:
        backend: makes the sandboxes.
        policy: the policy of every sandbox; its ``scratch`` is replaced by each
            sandbox's own directory.
        limits: the limits of every sandbox.
        size: how many ready sandboxes to keep (0 disables warming).
        prestart: the command the sandboxes will run, for backends that can start
            it ahead (see :class:`Prestart`).
        workdir: the backend's directory; the scratch volumes are made in its
            ``scratch`` directory, where the backend's ``reap`` finds them.
        on_event: receives every sandbox's events.
    """

    def __init__(
        self,
        backend: SandboxBackend,
        policy: SandboxPolicy,
        limits: SandboxLimits,
        *,
        workdir: Path,
        size: int = 2,
        on_event: Callable[[SandboxEvent], None] | None = None,
        prestart: Prestart | None = None,
        user: SandboxUser | None = None,
    ) -> None:
        self.backend = backend
        self.user = user or sandbox_user()
        self.policy = policy
        self.limits = limits
        self.size = size
        self.workdir = workdir
        self.prestart = prestart
        self.key = PoolKey.of(backend.name, policy, limits, prestart)
        self.last_error: BaseException | None = None
        self._on_event = on_event
        self._idle: list[PooledSandbox] = []
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def ready(self) -> int:
        """How many sandboxes wait in the pool now."""
        return len(self._idle)

    async def _new(self) -> PooledSandbox:
        home, volume = await _new_home(self.workdir, self.user)
        policy = replace(self.policy, scratch=volume.path)
        try:
            sandbox = await self.backend.create(
                policy, self.limits, on_event=self._on_event, prestart=self.prestart
            )
        except BaseException:
            await _remove_home(home, volume)
            raise
        return PooledSandbox(sandbox, home, volume)

    def warm(self) -> None:
        """Start filling the pool in the background (no-op if already filling)."""
        if self._closed or self.size <= 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill())

    async def fill(self) -> None:
        """Fill the pool now and wait until it is full (or a creation failed)."""
        self.warm()
        if self._refill is not None:
            await asyncio.shield(self._refill)

    async def _fill(self) -> None:
        while not self._closed and len(self._idle) < self.size:
            try:
                pooled = await self._new()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the error for acquire(), stop retrying
                self.last_error = exc
                log.warning("sandbox pool %s: cannot create a sandbox: %s", self.key.backend, exc)
                return
            if self._closed:
                await pooled.release()
                return
            self._idle.append(pooled)

    async def acquire(self) -> PooledSandbox:
        """A ready, never-used sandbox: from the pool, or created now if it is empty."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        pooled = self._idle.pop(0) if self._idle else None
        self.warm()
        return pooled if pooled is not None else await self._new()

    async def close(self) -> None:
        """Stop refilling and terminate every sandbox still waiting."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        idle, self._idle = self._idle, []
        for pooled in idle:
            await pooled.release()


def _reap_one(home: Path) -> None:
    # The run's own files were never moved here: removing the volume loses nothing.
    unmount(home / "root")
    shutil.rmtree(home, ignore_errors=True)


async def reap_scratch(workdir: Path) -> int:
    """Remove the scratch volumes of dead runtimes (the runs' own files were never in them).

    Returns:
        How many directories were removed.
    """
    root = workdir / "scratch"

    def dead_homes() -> list[Path]:
        if not root.is_dir():
            return []
        host = socket.gethostname()
        return [
            entry
            for entry in root.iterdir()
            if (m := _HOME.match(entry.name)) and owner_is_dead(f"{host}:{m.group(1)}:scratch")
        ]

    homes = await asyncio.to_thread(dead_homes)
    for home in homes:
        await asyncio.to_thread(_reap_one, home)
    return len(homes)
