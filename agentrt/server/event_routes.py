"""``GET /v1/runs/{id}/events``: a run's events as server-sent events, from its log.

Each event of the run's durable log is one server-sent event: its sequence
number as ``id``, its type as ``event``, and as ``data`` the event as
``GET /v1/runs/{id}`` shows it. The stream starts after the event the client
names (``Last-Event-ID``, else ``?after=``, else from the first) and ends after
``run.finished``; a run that waits for a person keeps its stream open, with
keep-alive comments, until it ends. Events are read from the store after its
watch says the run was written, never on a timer, and once per write however
many clients follow the run here (one reader per run,
:mod:`agentrt.server.event_tail`), so any replica serves any run's stream
exactly: every later event once, in order, none missing.

While a client listens, the run's model steps executed by this replica stream
their replies: each piece is a ``model.delta`` event without an ``id`` (it is
not in the log, so a client resuming never asks for it), sent after the events
written before it and before its step's ``model.result``. A replica that does
not execute the run has no pieces to send; its stream holds the same durable
events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from agentrt import _json
from agentrt.engine import Delta, LiveFeed, Runtime, event_dict
from agentrt.engine.events import RUN_FINISHED
from agentrt.server.auth import Caller, server_context
from agentrt.server.event_tail import RunTails, Subscription
from agentrt.server.problems import ApiError
from agentrt.server.run_routes import run_of
from agentrt.state.base import Event
from agentrt.state.records import RunRecord

__all__ = ["DELTA", "router"]

router = APIRouter(prefix="/v1", tags=["runs"])

DELTA = "model.delta"
"""The type of a piece of a model's reply, live (never in the log)."""

_STREAM = {
    200: {
        "description": "The run's events as server-sent events (`text/event-stream`).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/runs/{run_id}/events",
    summary="Stream a run's events",
    response_class=EventSourceResponse,
    responses=_STREAM,  # type: ignore[arg-type]
)
async def run_events(
    request: Request,
    principal: Caller,
    run_id: str,
    after: Annotated[int | None, Query(ge=0, description="start after this event")] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=20, description="start after this event (wins)")
    ] = None,
) -> EventSourceResponse:
    """The run's events from its log as they are written, and its model's replies live."""
    run = await run_of(request, principal, run_id)
    start = _start(run, last_event_id, after)
    ctx = server_context(request)
    return EventSourceResponse(
        _stream(ctx.runtime, ctx.tails, run.id, start),
        ping=ctx.limits.heartbeat_s,
        ping_message_factory=_keep_alive,
        sep="\n",
        send_timeout=ctx.limits.heartbeat_s * 4,  # a client that stopped reading is let go
    )


def _start(run: RunRecord, last_event_id: str | None, after: int | None) -> int:
    """The sequence number the stream starts after; 400 for one the log cannot have.

    ``Last-Event-ID`` wins over ``after``: a browser reconnecting sends the
    header with the URL it first opened."""
    if last_event_id is not None:
        text = last_event_id.strip()
        if not text.isdigit():
            raise ApiError(400, "Last-Event-ID: give the id (a number) of the last event seen")
        after = int(text)
    after = after or 0
    if after > run.last_seq:
        raise ApiError(400, f"the run has no event {after} yet (its last is {run.last_seq})")
    return after


def _keep_alive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


def _event_bytes(event: Event) -> bytes:
    data = _json.dumps(event_dict(event))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.type.encode(), data)


def _delta_bytes(delta: Delta) -> bytes:
    return b"event: " + DELTA.encode() + b"\ndata: " + _json.dumps(delta.to_dict()) + b"\n\n"


class _Merge:
    """The stream's order: each piece after the event it names (``Delta.after``) and
    before the next, which the run wrote after the piece was made."""

    def __init__(self, after: int) -> None:
        self.last = after  # the last event sent
        self.ended = False  # run.finished was sent
        self._held: list[Delta] = []  # pieces after events not read yet

    def send(self, events: list[Event], pieces: list[Delta]) -> list[bytes]:
        """What to send now of ``events`` (read after the last sent) and ``pieces``."""
        self._held.extend(pieces)
        out: list[bytes] = []
        queue = iter(events)
        held, self._held = self._held, []
        for index, piece in enumerate(held):
            while self.last < piece.after and (event := next(queue, None)) is not None:
                out.append(self._event(event))
                if self.ended:
                    return out
            if self.last < piece.after:  # its event is not read yet: keep it for later
                self._held = held[index:]
                break
            out.append(_delta_bytes(piece))
        for event in queue:
            out.append(self._event(event))
            if self.ended:
                break
        return out

    def _event(self, event: Event) -> bytes:
        self.last = event.seq
        self.ended = event.type == RUN_FINISHED
        return _event_bytes(event)


async def _stream(
    runtime: Runtime, tails: RunTails, run_id: str, after: int
) -> AsyncIterator[bytes]:
    """Every event after ``after`` until ``run.finished``, with the live pieces between.

    The run's tail (one reader of its log for every stream of it here) hears
    every write from before the first read. Pieces are taken after the events
    are read: a piece names an event written before it was made, so that event
    is read by then, or comes with the tail's read that its write brings.
    """
    async with tails.subscribe(run_id) as subscription:
        with runtime.live.listen(run_id) as feed:
            merge = _Merge(after)
            while True:
                events = await subscription.events_after(merge.last)
                if chunks := merge.send(events, feed.take()):
                    yield b"".join(chunks)  # one write for what came together
                if merge.ended:
                    return
                if not events and await subscription.over(merge.last):
                    return  # deleted, or ended before the event asked for
                waiting = _until_written(subscription, feed, merge)
                async with contextlib.aclosing(waiting) as pieces:
                    async for chunk in pieces:
                        yield chunk


async def _until_written(
    subscription: Subscription, feed: LiveFeed, merge: _Merge
) -> AsyncGenerator[bytes, None]:
    """The pieces that come until the run's tail hands events (or ends)."""
    written = asyncio.ensure_future(subscription.changed())
    try:
        while True:
            ready = asyncio.ensure_future(feed.ready())
            try:
                done, _ = await asyncio.wait({written, ready}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
            if written in done:
                return
            if chunks := merge.send([], feed.take()):
                yield b"".join(chunks)
    finally:
        if not written.done():
            written.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await written
