"""Cancelling a run: here if this worker executes it, else through its owner, or
directly when nobody executes it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from agentrt.engine.holders import dead_holder, orphaned
from agentrt.state.base import WAITING_STATUSES, RunRecord, Store

__all__ = ["CancelHost", "cancel"]


class _Finisher(Protocol):
    async def finish_cancelled(self, run: RunRecord) -> Any: ...


class CancelHost(Protocol):
    """What cancelling needs of the worker it cancels for."""

    store: Store
    owner: str
    lease_ttl_s: float

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def executor(self) -> _Finisher: ...

    async def get(self, run_id: str) -> RunRecord: ...

    def cancel_here(self, run_id: str) -> asyncio.Task[Any] | None: ...


async def cancel(
    worker: CancelHost,
    run_id: str,
    *,
    wait_s: float = 0.0,
    cause: str | None = None,
    by: str | None = None,
) -> RunRecord:
    """Cancel ``run_id`` for ``worker``.

    The request is recorded first, with who asks (``by``), when and why
    (``cause``, see ``RunRecord.cancel_cause``); from then on the store refuses
    any other step or end of the run, so a run whose cancel was acknowledged
    never ends otherwise. Its cancelled end names them. An owner in another
    process is told through the store's watch; ``wait_s`` waits up to that long
    for it to end the run.
    """
    store, now = worker.store, worker.clock
    await worker.get(run_id)  # a clear error for an unknown run
    run = await store.request_cancel(run_id, cause=cause, by=by, now=now())
    if run.finished:
        return run  # it ended before the request: nothing was acknowledged
    task = worker.cancel_here(run_id)
    if task is not None:
        try:
            await task
        except asyncio.CancelledError:
            if not task.done():
                raise  # the caller itself is cancelled, not only the run
        return await worker.get(run_id)
    if orphaned(run, now()) or run.status in WAITING_STATUSES:
        leased = await store.acquire_lease(
            run_id, worker.owner, worker.lease_ttl_s, now=now(), replacing=dead_holder(run)
        )
        if leased is not None:
            try:
                await worker.executor.finish_cancelled(leased)
            finally:
                await store.release_lease(run_id, worker.owner)
    if wait_s <= 0:
        return await worker.get(run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    async with store.watch() as watch:
        run = await worker.get(run_id)
        while not run.finished and (left := deadline - loop.time()) > 0:
            if await watch.changed({run_id}, left):
                run = await worker.get(run_id)
        return run
