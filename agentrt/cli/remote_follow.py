"""The server's records as the runtime's own, and a run followed live from its events,
for the commands against a server (:mod:`agentrt.cli.remote`).

The renderers draw the runtime's records (runs, events, results); these turn the
API's back into them, so a command prints against a server what it prints over
a store. A run is followed from its server-sent events: drawn by the same live
trace, which is shown what the log held when the execution began, as a runtime
shows it.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import cast

from agentrt.cli._shared import stop_command, style
from agentrt.cli.render import LiveTrace
from agentrt.client import AgentrtClient, ModelDelta, RunDetail, RunEvent
from agentrt.client import Run as RemoteRun
from agentrt.engine import RunResult, RunView
from agentrt.engine import events as ev
from agentrt.state.base import WAITING_STATUSES, Event, RunRecord, RunStatus, Usage

__all__ = ["Handler", "event_of", "follow", "live_trace", "read_run", "record_of", "view_of"]

Handler = Callable[[argparse.Namespace, AgentrtClient], Awaitable[int]]
"""A command's remote form: its parsed arguments and a client of the server; its exit code."""


def record_of(run: RemoteRun, updated_at: float | None = None) -> RunRecord:
    """The :class:`RunRecord` a renderer draws, of a run the server sent."""
    u = run.usage
    return RunRecord(
        id=run.id, namespace=run.namespace, agent=run.agent, status=cast(RunStatus, run.status),
        created_at=run.created_at, updated_at=updated_at or run.finished_at or run.created_at,
        session_id=run.session, turn=run.turn, reason=run.reason, finished_at=run.finished_at,
        parent_run=run.parent_run, fork_step=run.fork_step, lease_owner=run.lease_owner,
        lease_expires=run.lease_expires, principal=run.principal,
        cancel_requested=run.cancel_requested, cancel_by=run.cancel_by,
        cancel_cause=run.cancel_cause,
        usage=Usage(u.input_tokens, u.output_tokens, u.cost_usd, u.model_calls, u.tool_calls),
    )  # fmt: skip


def event_of(event: RunEvent) -> Event:
    """The log's :class:`Event` of one the server sent."""
    return Event(event.seq, event.type, event.data, event.ts, event.step)


def view_of(detail: RunDetail, children: tuple[RunView, ...] = ()) -> RunView:
    """The read model the local commands show, of one the server sent."""
    events = [event_of(e) for e in detail.events]
    # The row's last change is not sent; its last event is when it last changed.
    updated = max([detail.run.created_at, *(e.ts for e in events)])
    return RunView.of(record_of(detail.run, updated), events, children)


async def read_run(client: AgentrtClient, run_id: str) -> RunView:
    """A run and its child runs, theirs too, as ``read_run(children=True)`` reads them."""
    detail = await client.get_run(run_id)
    kids = []
    for child_id in detail.children:
        child = await read_run(client, child_id)
        if child.run.fork_step is None:  # a fork names its origin as parent; not a child
            kids.append(child)
    kids.sort(key=lambda v: v.run.created_at)
    return view_of(detail, tuple(kids))


def live_trace(args: argparse.Namespace, live: bool = True) -> LiveTrace | None:
    """The live trace a command draws a run with (none with ``--json``)."""
    if not live or args.json:
        return None
    return LiveTrace(style=style(args), on_closed=stop_command())


def _child_of(event: RunEvent) -> str | None:
    """The child run whose end ``event`` records (an agent tool's call, a team node's)."""
    if event.type == ev.TOOL_RESULT:
        child = (event.data.get("trace") or {}).get("child_run")
    elif event.type == ev.NODE_FINISHED:
        child = event.data.get("child_run")
    else:
        return None
    return child if isinstance(child, str) else None


async def _show_child(client: AgentrtClient, trace: LiveTrace, run_id: str) -> None:
    """A child run's steps, drawn before the step of its parent that it ended.

    Locally the trace shows a child's steps as they happen, before the parent's
    step records the child's end; the server streams each run on its own, so a
    child's log is drawn whole when its parent's stream says it ended.
    """
    detail = await client.get_run(run_id)
    for event in detail.events:
        await _show(client, trace, run_id, event)


async def _show(client: AgentrtClient, trace: LiveTrace, run_id: str, event: RunEvent) -> None:
    child = _child_of(event)
    if child is not None:
        await _show_child(client, trace, child)
    trace(run_id, event_of(event))


async def follow(
    client: AgentrtClient, run_id: str, trace: LiveTrace | None, *, since: RunDetail | None = None
) -> RunResult:
    """Show a run's steps live (with ``trace``) until it ends or waits; its result.

    ``since`` is the run as it was before a request continued it (a decision, a
    resume): only what came after is read. As a runtime shows its trace the log it
    takes a run up with, what the log holds before the execution's ``run.started``
    (earlier steps, a fork's shared ones, the decision that continued it) is taken
    up, not drawn.
    """
    loaded = [event_of(e) for e in since.events] if since is not None else []
    started = False
    async for event in client.events(run_id, after=since.last_seq if since is not None else 0):
        if isinstance(event, ModelDelta):
            continue  # the local trace draws whole steps, not pieces
        if trace is not None:
            if not started and event.type != ev.RUN_STARTED:
                loaded.append(event_of(event))
            else:
                if not started:
                    trace.log_loaded(run_id, loaded)
                    started = True
                await _show(client, trace, run_id, event)
        if event.type == ev.RUN_FINISHED:
            break
        if event.type == ev.RUN_WAITING:
            detail = await client.get_run(run_id)
            if detail.run.status in WAITING_STATUSES:
                break  # someone decided already: it goes on, and so does the trace
    return view_of(await client.get_run(run_id)).result()
