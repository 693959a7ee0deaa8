"""What a key may do to a run: cancel, resume, fork, approve, deny, resolve, export.

Each action is recorded in the run's log with the principal that asked for it
(``by``): a cancel in the run's cancelled end (with when it was asked), a resume
in the ``run.started`` of the execution it starts, a decision in its own event, a
fork in the new run's ``run.created``. An operator acts on any run of its tenant;
a ``user`` key cancels, resumes, forks and exports only the runs it started
(another's is a 404, as a run of another tenant is); deciding on a run's tool
calls (approve, deny, resolve) is an operator's: approval exists so that someone
other than whoever asked checks the call. An action the run's state does not
allow (cancelling a finished run, approving a run that waits for nothing) is a
409 saying why, and writes nothing.

Actions that continue a run answer once it is continued (202, the run as it is
then), or, with ``wait``, once it ends or waits for a person again (200, with its
result; 202 if the server's longest wait passes first), as queries do.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from agentrt.engine import BudgetAddition, run_summary
from agentrt.server.auth import Caller, require, server_context
from agentrt.server.keys import Principal
from agentrt.server.problems import ApiError
from agentrt.server.run_routes import TEXT, run_of
from agentrt.state.records import WAITING_STATUSES

__all__ = ["router"]

router = APIRouter(prefix="/v1/runs", tags=["run actions"])

User = Annotated[Principal, Depends(require("user"))]
Operator = Annotated[Principal, Depends(require("operator"))]

# How long a cancel waits for the run's end by default (as `agentrt cancel` does).
_CANCEL_WAIT_S = 5.0


class Waiting(BaseModel):
    """Whether to answer only once the run ends or waits for a person again."""

    model_config = ConfigDict(extra="forbid")

    wait: bool = Field(default=False, description="answer when the run ends or waits again")
    wait_s: float | None = Field(
        default=None, gt=0, description="wait at most this long (the server caps it)"
    )


class AddedBudget(BaseModel):
    """What to add to a ``budget_exhausted`` run's own limits as it resumes."""

    model_config = ConfigDict(extra="forbid")

    tokens: int = Field(default=0, ge=0, description="added to budgets.max_tokens")
    cost_usd: float = Field(default=0.0, ge=0, description="added to budgets.max_cost_usd")
    tool_calls: int = Field(default=0, ge=0, description="added to budgets.max_tool_calls")
    deadline_s: float = Field(default=0.0, ge=0, description="added to budgets.deadline_s")

    def addition(self) -> BudgetAddition:
        """The engine's form."""
        return BudgetAddition(**self.model_dump())


class ResumeRequest(Waiting):
    """How to resume: what to add to a stopped run's budgets, and whether to wait."""

    add_budget: AddedBudget | None = Field(
        default=None,
        description="raise a run stopped budget_exhausted (an operator's): it goes on from "
        "the step it could not afford",
    )


class CancelRequest(BaseModel):
    """How long to wait for the cancelled run's end."""

    model_config = ConfigDict(extra="forbid")

    wait_s: float | None = Field(
        default=None, ge=0, description="wait at most this long for the end (default 5 s)"
    )


class ForkRequest(Waiting):
    """A new run sharing steps ``1..step`` of the run, with what changes after."""

    step: int = Field(ge=0, description="the last step the fork shares")
    model: str | None = Field(
        default=None, max_length=253, pattern=TEXT, description="a Model to use after"
    )
    instructions: str | None = Field(
        default=None, max_length=1 << 20, description="instructions to use after"
    )


class ApproveRequest(Waiting):
    """The tool call (its step) to approve."""

    step: int = Field(ge=1, description="the step of the tool call that waits")


class DenyRequest(ApproveRequest):
    """The tool call to deny, and why (the model sees it)."""

    reason: str = Field(min_length=1, max_length=10_000, description="why, for the model")


class _Resolve(Waiting):
    step: int = Field(ge=1, description="the undecided step")


class ResolveRerun(_Resolve):
    """Run the call again: it did not happen, or it may happen twice."""

    action: Literal["rerun"]


class ResolveOutput(_Resolve):
    """The call happened and returned ``output``."""

    action: Literal["output"]
    output: str = Field(max_length=1 << 20, description="what the call returned")


class ResolveFail(_Resolve):
    """The call failed, for ``reason`` (the model sees it)."""

    action: Literal["fail"]
    reason: str = Field(min_length=1, max_length=10_000, description="why the call failed")


ResolveRequest = Annotated[
    ResolveRerun | ResolveOutput | ResolveFail, Field(discriminator="action")
]
"""A decision on a tool step whose outcome is unknown after a crash: each action
with the fields it needs, so the schema alone says what a valid one is."""


@router.post("/{run_id}/cancel", summary="Cancel a run")
async def cancel(
    request: Request,
    response: Response,
    principal: User,
    run_id: str,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Cancel the run wherever it executes, its sandboxed tool calls in flight too:
    200 once it ended ``cancelled``, 202 while its worker still stops it."""
    run = await run_of(request, principal, run_id)
    if run.finished:
        raise ApiError(409, f"run {run.id} already ended {run.status}: nothing to cancel")
    ctx = server_context(request)
    asked = _CANCEL_WAIT_S if body is None or body.wait_s is None else body.wait_s
    after = await ctx.runtime.cancel(
        run.id, wait_s=min(asked, ctx.limits.max_wait_s), by=principal.label
    )
    if after.finished and not after.cancel_requested:
        raise ApiError(409, f"run {run.id} ended {after.status} before the cancel was asked")
    response.status_code = 200 if after.status == "cancelled" else 202
    return {"run": run_summary(after)}


@router.post("/{run_id}/resume", status_code=202, summary="Resume a run")
async def resume(
    request: Request,
    response: Response,
    principal: User,
    run_id: str,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Continue an interrupted (or queued) run here; recorded steps are not redone. A
    run stopped ``budget_exhausted`` is reopened, with ``add_budget`` added to its own
    limits (raising a run's limits is an operator's, as applying an Agent is)."""
    body = body or ResumeRequest()
    if body.add_budget is not None and not principal.may("operator"):
        raise ApiError(403, f"raising a run's budgets needs the operator role; the key "
                       f"{principal.name!r} is {principal.role}")  # fmt: skip
    run = await run_of(request, principal, run_id)
    if run.status in WAITING_STATUSES:
        raise ApiError(
            409, f"run {run.id} is {run.status}, not interrupted: it goes on once {run.reason}"
        )
    runtime = server_context(request).runtime
    if runtime.executing(run.id):
        raise ApiError(409, f"run {run.id} is executing: nothing to resume")
    # A live worker elsewhere holding it is a ConflictError (409) too.
    added = None if body.add_budget is None else body.add_budget.addition()
    await runtime.resume(run.id, wait=False, by=principal.label, add_budget=added)
    return await _answered(request, response, principal, run.id, body)


@router.post("/{run_id}/fork", status_code=201, summary="Fork a run from a step")
async def fork(
    request: Request, response: Response, principal: User, run_id: str, body: ForkRequest
) -> dict[str, Any]:
    """Start a new run sharing steps ``1..step`` of this one (with another model or
    instructions after them, if given); 201 with it, ``Location`` its address."""
    run = await run_of(request, principal, run_id)
    forked = await server_context(request).runtime.fork(
        run.id, from_step=body.step, model=body.model, instructions=body.instructions,
        principal=principal.label, role=principal.role,
    )  # fmt: skip
    response.headers["Location"] = f"/v1/runs/{forked.id}"
    if not body.wait:
        return {"run": run_summary(forked)}
    return await _answered(request, response, principal, forked.id, body)


@router.post("/{run_id}/approve", status_code=202, summary="Approve a tool call")
async def approve(
    request: Request, response: Response, principal: Operator, run_id: str, body: ApproveRequest
) -> dict[str, Any]:
    """Approve the call the run waits on at ``step``; it continues once all are decided."""
    return await _decide(request, response, principal, run_id, body, approved=True)


@router.post("/{run_id}/deny", status_code=202, summary="Deny a tool call")
async def deny(
    request: Request, response: Response, principal: Operator, run_id: str, body: DenyRequest
) -> dict[str, Any]:
    """Deny the call at ``step``: the model sees it failed, with ``reason``."""
    return await _decide(request, response, principal, run_id, body, approved=False)


@router.post("/{run_id}/resolve", status_code=202, summary="Resolve an unknown step")
async def resolve(
    request: Request, response: Response, principal: Operator, run_id: str, body: ResolveRequest
) -> dict[str, Any]:
    """Decide a tool step a crash left unknown (run it again, or say what it returned
    or that it failed), then continue the run."""
    run = await run_of(request, principal, run_id)
    output = ""
    if isinstance(body, ResolveOutput):
        output = body.output
    elif isinstance(body, ResolveFail):
        output = body.reason
    await server_context(request).runtime.resolve(
        run.id, body.step, body.action, output=output, by=principal.label, wait=False
    )
    return await _answered(request, response, principal, run.id, body)


@router.get("/{run_id}/export", summary="Export a run")
async def export(request: Request, principal: Caller, run_id: str) -> dict[str, Any]:
    """The run's whole log in the archive format (``agentrt runs import`` reads it)."""
    run = await run_of(request, principal, run_id)
    return await server_context(request).runtime.export_run(run.id)


async def _decide(
    request: Request,
    response: Response,
    principal: Principal,
    run_id: str,
    body: ApproveRequest,
    *,
    approved: bool,
) -> dict[str, Any]:
    run = await run_of(request, principal, run_id)
    reason = body.reason if isinstance(body, DenyRequest) else None
    await server_context(request).runtime.approve(
        run.id, body.step, approved=approved, reason=reason, by=principal.label, wait=False
    )
    return await _answered(request, response, principal, run.id, body)


async def _answered(
    request: Request, response: Response, principal: Principal, run_id: str, body: Waiting
) -> dict[str, Any]:
    """The run as it is now, or (with ``wait``) once it ends or waits again: 200 with
    its result then, the route's own status (202, 201) otherwise."""
    ctx = server_context(request)
    if body.wait:
        limit = min(body.wait_s or ctx.limits.max_wait_s, ctx.limits.max_wait_s)
        try:
            async with asyncio.timeout(limit):
                result = await ctx.runtime.wait(run_id)
        except TimeoutError:
            pass
        else:
            response.status_code = 200
            current = await run_of(request, principal, run_id)
            return {"run": run_summary(current), "result": result.to_dict()}
    return {"run": run_summary(await run_of(request, principal, run_id))}
