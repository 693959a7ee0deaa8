"""Creating a run and, for the first turn of a session, the session it joins."""

from __future__ import annotations

from agentrt.errors import ConflictError, NotFoundError, SessionTaken
from agentrt.state.base import EventDraft, NewRun, RunRecord, SessionRecord, Store

__all__ = ["create_run"]


async def create_run(
    store: Store, new: NewRun, first: EventDraft, *, own_session: bool
) -> tuple[RunRecord, bool]:
    """Create ``new`` with its first event (and its session, the first time): once more if
    its session was deleted between the two writes. Returns the run and whether it is
    new (``False``: its idempotency key gave an existing one).

    A session of another namespace raises ``ConflictError``; with ``own_session``, one
    another principal started raises ``SessionTaken``.
    """
    for attempt in (1, 2):
        if new.session_id is not None:
            session = SessionRecord(
                new.session_id, new.namespace, new.created_at, principal=new.principal
            )
            stored = await store.create_session(session)
            if stored.namespace != new.namespace:
                # Not which one: the caller may be a tenant that must not learn of it.
                raise ConflictError(
                    f"session {new.session_id!r} belongs to another namespace than "
                    f"{new.namespace!r}; give the turn another session id"
                )
            if own_session and stored.principal != new.principal:
                raise SessionTaken(
                    f"session {new.session_id!r} was started by another principal; "
                    "give the turn another session id",
                    session_id=new.session_id,
                )
        try:
            return await store.create_run(new, [first])
        except NotFoundError:
            if new.session_id is None or attempt == 2:
                raise
    raise AssertionError("unreachable")
