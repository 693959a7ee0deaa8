"""Tool quotas: whether one more call of a Tool resource is allowed.

A Tool's ``quotas`` limit how often it may be called per run, per session and
per tenant (namespace) per UTC calendar day. The engine asks
:func:`quota_refusal` before each call and, when it refuses, gives the model
the refusal as the call's error result instead of calling the tool.

Counts come from what is recorded: the run's own calls from its log (the
engine knows them), the session's and the tenant's from
:meth:`~agentrt.state.base.Store.count_tool_calls`. Calls of runs removed by
``gc`` are no longer counted, so a ``gc`` cutoff inside the last day lets
``per_tenant_per_day`` allow more than its limit.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agentrt._text import count
from agentrt.spec.resources import ToolSpec
from agentrt.state.base import Store

__all__ = ["day_start", "quota_refusal"]


def day_start(now: float) -> float:
    """The Unix time of 00:00 UTC on the UTC calendar day of ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def _refusal(toolset: str, limit: int, per: str, field: str) -> str:
    return (
        f"quota exceeded: Tool {toolset!r} allows {count(limit, 'call')} per {per} (quotas.{field})"
    )


async def quota_refusal(
    store: Store,
    *,
    spec: ToolSpec,
    toolset: str,
    namespace: str,
    session_id: str | None,
    calls_in_run: int,
    now: float,
    pending: int = 0,
) -> str | None:
    """Why one more call of Tool ``toolset`` is refused, or ``None`` if it is allowed.

    A limit of ``n`` allows ``n`` calls: the call is refused when ``n`` calls
    are already counted. Limits are checked per run, then per session, then
    per tenant per day; the first one reached is reported. The store is only
    asked for the limits that are set.

    The check is not atomic with recording the call: runs of the same
    session or tenant calling at the same moment may each be allowed the
    last call. Within one run, pass the calls already allowed but not yet
    recorded (earlier calls of the same model reply) as ``pending``.

    Args:
        store: Where the session's and the tenant's calls are counted.
        spec: The Tool resource's spec; only ``spec.quotas`` is read.
        toolset: The Tool resource's name, as recorded in ``tool.call`` events.
        namespace: The tenant the run belongs to.
        session_id: The run's session; without one ``per_session`` does not apply.
        calls_in_run: Calls of this Tool resource recorded in the run's log.
        now: The current Unix time; its UTC calendar day is the quota's day.
        pending: Calls of this Tool resource allowed but not yet recorded.

    Returns:
        A message for the model naming the Tool, the limit and the quota
        field, or ``None``.
    """
    quotas = spec.quotas
    if quotas.per_run is not None and calls_in_run + pending >= quotas.per_run:
        return _refusal(toolset, quotas.per_run, "run", "per_run")
    if quotas.per_session is not None and session_id is not None:
        used = await store.count_tool_calls(
            namespace=namespace, tool=toolset, session_id=session_id
        )
        if used + pending >= quotas.per_session:
            return _refusal(toolset, quotas.per_session, "session", "per_session")
    if quotas.per_tenant_per_day is not None:
        used = await store.count_tool_calls(namespace=namespace, tool=toolset, since=day_start(now))
        if used + pending >= quotas.per_tenant_per_day:
            message = _refusal(
                toolset,
                quotas.per_tenant_per_day,
                f"day in namespace {namespace!r}",
                "per_tenant_per_day",
            )
            return f"{message}; the count restarts at 00:00 UTC"
    return None
