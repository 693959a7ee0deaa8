"""A typed async client of agentrt's HTTP API (``agentrt serve``).

It speaks HTTP only, so a program that drives a shared agentrt service needs
neither the engine nor a store::

    async with AgentrtClient("http://127.0.0.1:8080", api_key) as client:
        await client.apply(Path("agents.yaml").read_text())
        result = await client.run("greeter", "Say hi to Ada")
        async for event in client.events(result.run_id):
            print(event)

Every refusal of the server, and a server that does not answer, is an
:class:`ApiError` with the status, code, message and per-field issues of the
API's one error shape. :meth:`AgentrtClient.events` follows a run's live
stream to its end, reconnecting with ``Last-Event-ID`` when the connection
drops, so it yields every event of the log exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from agentrt import _json
from agentrt._client_types import (
    DELTA,
    FINISHED,
    ApiError,
    DeletedSession,
    ModelDelta,
    Resource,
    Run,
    RunArchive,
    RunDetail,
    RunEvent,
    RunOutcome,
    RunPage,
    Session,
    SessionDetail,
    SessionPage,
    StreamEvent,
    Submission,
    Turn,
    Usage,
)
from agentrt._sse import read_sse

__all__ = [
    "AgentrtClient",
    "ApiError",
    "DeletedSession",
    "ModelDelta",
    "Resource",
    "Run",
    "RunArchive",
    "RunDetail",
    "RunEvent",
    "RunOutcome",
    "Session",
    "SessionDetail",
    "RunPage",
    "SessionPage",
    "StreamEvent",
    "Submission",
    "Turn",
    "Usage",
]

_WAITING = frozenset({"waiting", "waiting_approval"})
_AGAIN = frozenset({0, 503})  # no answer, or a replica whose store does not answer now


def _api_root(base_url: str) -> str:
    """``http://host:port`` of a URL given with or without ``/v1``."""
    return base_url.rstrip("/").removesuffix("/v1").rstrip("/")


def _seg(value: str) -> str:
    """``value`` as one segment of a path: an id with ``/`` or ``?`` stays one id."""
    return quote(value, safe="")


def _given(**values: Any) -> dict[str, Any]:
    """The fields of a request body that were given (``None``: left to the server)."""
    return {name: value for name, value in values.items() if value is not None}


class AgentrtClient:
    """A client of one agentrt server with one API key; use it as an async context manager.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:8080`` (``/v1`` may be given).
        api_key: An ``agrt_...`` key (``agentrt keys create``); it decides the tenant.
        timeout: Seconds a request may take to answer (a waited-for query
            included: the server caps its waits at ``--max-wait``, 300 s).
        reconnects: How many times in a row :meth:`events` reconnects without
            receiving an event before it gives up.
        proxy: An HTTP proxy to go through (none unless given: the client reads
            no environment; the command line picks one by
            ``HTTP_PROXY``/``NO_PROXY`` as the command line does).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 330.0,
        reconnects: int = 5,
        proxy: str | None = None,
    ) -> None:
        self.base_url = _api_root(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._reconnects = reconnects
        self._proxy = proxy
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AgentrtClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that uses it.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=self._timeout),
            )  # fmt: skip
        return self._http

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        content: tuple[bytes, str] | None = None,
    ) -> Any:
        """One request (a ``json`` body, or raw ``content`` and its type); its JSON
        answer, or an :class:`ApiError`."""
        sent = dict(headers or {})
        if json is not None:
            content = (_json.dumps(json), "application/json")
        data = None
        if content is not None:
            data, sent["Content-Type"] = content
        url = self.base_url + path
        try:
            async with self._session().request(
                method, url, data=data, params=list(params), headers=sent, proxy=self._proxy
            ) as response:
                body = await response.read()
                if response.status >= 400:
                    raise _refusal(response, body)
                return _json.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(self.base_url, exc) from None

    # -- resources

    async def apply(
        self, documents: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> list[Resource]:
        """Validate and store resources in the key's tenant; the stored records.

        Args:
            documents: YAML text (``---`` between documents), or one resource
                (or a list) as plain data.

        Raises:
            ApiError: 422 with an issue per problem (document, resource, field, fix).
        """
        if isinstance(documents, str):
            yaml = (documents.encode(), "application/yaml")
            body = await self._call("POST", "/v1/resources", content=yaml)
        else:
            data = (
                dict(documents) if isinstance(documents, Mapping) else [dict(d) for d in documents]
            )
            body = await self._call("POST", "/v1/resources", json=data)
        return [Resource.from_dict(r) for r in body["applied"]]

    async def get_resource(self, kind: str, name: str) -> Resource:
        """One resource of the tenant (``ApiError`` 404 if there is none)."""
        path = f"/v1/resources/{_seg(kind)}/{_seg(name)}"
        return Resource.from_dict(await self._call("GET", path))

    async def list_resources(self, kind: str | None = None) -> list[Resource]:
        """The tenant's resources, of ``kind`` or all, by kind and name."""
        params = [("kind", kind)] if kind else []
        body = await self._call("GET", "/v1/resources", params=params)
        return [Resource.from_dict(r) for r in body["items"]]

    async def delete_resource(self, kind: str, name: str, *, if_match: int | None = None) -> None:
        """Delete a resource; with ``if_match``, only that generation (``ApiError`` 412)."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        await self._call("DELETE", f"/v1/resources/{_seg(kind)}/{_seg(name)}", headers=headers)

    # -- queries and runs

    async def submit(
        self,
        target: str,
        input: str,
        *,
        session: str | None = None,
        double_texting: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        wait_s: float | None = None,
        budgets: Mapping[str, float | int] | None = None,
        concurrency: int | None = None,
    ) -> Submission:
        """Start a run of the Agent or Team ``target``; with ``wait``, answer when it ends.

        ``budgets`` (``max_tokens``, ``max_tool_calls``, ``max_cost_usd``,
        ``deadline_s``, ``max_child_runs``, ``max_depth``) lower the target's limits
        for this run, never raise them; ``concurrency`` lowers a Team's nodes at once.
        The same ``idempotency_key`` never starts two runs. ``double_texting``
        (``reject``, ``enqueue``, ``interrupt``, ``rollback``) says what to do when
        the ``session`` has an unfinished turn (``ApiError`` 409 ``session_busy``
        for ``reject``). Waiting ends when the run ends or waits for a person, or
        when the server's longest wait passes (then ``outcome`` is ``None``).
        """
        body = {"target": target, "input": input, "wait": wait} | _given(
            session=session, double_texting=double_texting, idempotency_key=idempotency_key,
            wait_s=wait_s, budgets=None if budgets is None else dict(budgets),
            concurrency=concurrency,
        )  # fmt: skip
        return Submission.from_dict(await self._call("POST", "/v1/queries", json=body))

    async def run(
        self,
        target: str,
        input: str,
        *,
        session: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunOutcome:
        """Submit a query and wait for its outcome, however long the run takes."""
        query = await self.submit(
            target, input, session=session, idempotency_key=idempotency_key, wait=True
        )
        if query.outcome is not None:
            return query.outcome
        return await self.wait(query.run.id)

    async def wait(self, run_id: str) -> RunOutcome:
        """The run's outcome once it ends or waits for a person (from its live stream)."""
        detail = await self.get_run(run_id)
        if detail.run.finished or detail.run.status in _WAITING:
            return detail.outcome()
        async for event in self.events(run_id, after=detail.last_seq):
            if event.type == FINISHED:
                break
            if event.type == "run.waiting":
                current = await self.get_run(run_id)
                if current.run.status in _WAITING:
                    return current.outcome()
        return (await self.get_run(run_id)).outcome()

    async def get_run(self, run_id: str) -> RunDetail:
        """The run's read model (``ApiError`` 404 for a run not of the tenant)."""
        return RunDetail.from_dict(await self._call("GET", f"/v1/runs/{_seg(run_id)}"))

    async def list_runs(
        self,
        *,
        status: Sequence[str] = (),
        target: str | None = None,
        session: str | None = None,
        parent: str | None = None,
        principal: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        """A page of the tenant's runs (a ``user`` key's: its own), newest first; every
        filter given must hold (``created_after <= created_at < created_before``, Unix
        seconds). Pass the page's ``next_cursor`` as ``cursor`` for the next."""
        params = [("status", s) for s in status] + [("limit", str(limit))]
        given = {
            "target": target, "session": session, "parent": parent, "principal": principal,
            "created_after": created_after, "created_before": created_before, "cursor": cursor,
        }  # fmt: skip
        params += [(k, str(v)) for k, v in given.items() if v is not None]
        return RunPage.from_dict(await self._call("GET", "/v1/runs", params=params))

    # -- acting on runs

    async def cancel_run(self, run_id: str, *, wait_s: float | None = None) -> Run:
        """Cancel a run wherever it executes, its sandboxed tool calls in flight too.

        Answers once it ended ``cancelled`` or ``wait_s`` passed (the server's
        default 5 s), with the run as it is then: still stopping unless its
        ``status`` is ``cancelled``.

        Raises:
            ApiError: 409 for a run that had ended; 404 for a run the key may not
                see; 403 for a ``viewer`` key.
        """
        body = _given(wait_s=wait_s)
        reply = await self._call("POST", f"/v1/runs/{_seg(run_id)}/cancel", json=body)
        return Run.from_dict(reply["run"])

    async def resume_run(
        self,
        run_id: str,
        *,
        wait: bool = False,
        wait_s: float | None = None,
        add_budget: Mapping[str, float] | None = None,
    ) -> Submission:
        """Continue an interrupted (or queued) run on the server; recorded steps are not
        redone. With ``wait``, answer once it ends or waits for a person again. A run
        stopped ``budget_exhausted`` is reopened with ``add_budget`` (``tokens``,
        ``cost_usd``, ``tool_calls``, ``deadline_s``) added to its own limits (an
        operator key's).

        Raises:
            ApiError: 409 for a run that ended otherwise, waits for a person or
                executes; 403 for ``add_budget`` from a ``user`` key.
        """
        body = {} if add_budget is None else {"add_budget": dict(add_budget)}
        return await self._act(run_id, "resume", body, wait, wait_s)

    async def fork_run(
        self,
        run_id: str,
        step: int,
        *,
        model: str | None = None,
        instructions: str | None = None,
        wait: bool = False,
        wait_s: float | None = None,
    ) -> Submission:
        """Start a new run (the key's) sharing steps ``1..step`` of ``run_id``, with
        another Model or instructions after them if given; its ``run`` is the fork.

        Raises:
            ApiError: 400 for a step past the run's end.
        """
        body = {"step": step} | _given(model=model, instructions=instructions)
        return await self._act(run_id, "fork", body, wait, wait_s)

    async def approve(
        self, run_id: str, step: int, *, wait: bool = False, wait_s: float | None = None
    ) -> Submission:
        """Approve the tool call the run waits on at ``step`` (an operator's); the run
        goes on once every call it waits on is decided.

        Raises:
            ApiError: 409 if ``step`` does not wait for approval; 403 below operator.
        """
        return await self._act(run_id, "approve", {"step": step}, wait, wait_s)

    async def deny(
        self,
        run_id: str,
        step: int,
        reason: str,
        *,
        wait: bool = False,
        wait_s: float | None = None,
    ) -> Submission:
        """Deny the tool call at ``step``: the model sees it failed, with ``reason``.

        Raises:
            ApiError: 409 if ``step`` does not wait for approval; 403 below operator.
        """
        body = {"step": step, "reason": reason}
        return await self._act(run_id, "deny", body, wait, wait_s)

    async def resolve(
        self,
        run_id: str,
        step: int,
        action: Literal["rerun", "output", "fail"],
        *,
        output: str | None = None,
        reason: str | None = None,
        wait: bool = False,
        wait_s: float | None = None,
    ) -> Submission:
        """Decide a tool step a crash left unknown, then continue the run: ``rerun``
        the call, say it happened and returned ``output``, or that it failed
        (``reason``).

        Raises:
            ApiError: 409 if ``step`` is not undecided; 422 for ``output`` without
                its text or ``fail`` without a reason.
        """
        body = {"step": step, "action": action} | _given(output=output, reason=reason)
        return await self._act(run_id, "resolve", body, wait, wait_s)

    async def export_run(self, run_id: str) -> RunArchive:
        """The run's whole log in the archive format (``agentrt runs import`` reads
        ``.to_dict()``)."""
        return RunArchive.from_dict(await self._call("GET", f"/v1/runs/{_seg(run_id)}/export"))

    async def _act(
        self, run_id: str, action: str, body: dict[str, Any], wait: bool, wait_s: float | None
    ) -> Submission:
        """One action that continues or starts a run, answered as a query is."""
        body = body | {"wait": wait} | _given(wait_s=wait_s)
        path = f"/v1/runs/{_seg(run_id)}/{action}"
        return Submission.from_dict(await self._call("POST", path, json=body))

    # -- sessions

    async def list_sessions(self, *, limit: int = 100, cursor: str | None = None) -> SessionPage:
        """A page of the tenant's sessions, newest first; pass its ``next_cursor`` as
        ``cursor`` for the next."""
        params = [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        return SessionPage.from_dict(await self._call("GET", "/v1/sessions", params=params))

    async def get_session(self, session_id: str, *, limit: int = 1000) -> SessionDetail:
        """A session with its first ``limit`` turns (``ApiError`` 404 if the tenant has
        no such session)."""
        path = f"/v1/sessions/{_seg(session_id)}"
        body = await self._call("GET", path, params=[("limit", str(limit))])
        return SessionDetail.from_dict(body)

    async def delete_session(self, session_id: str) -> DeletedSession:
        """Delete a session with its turns and their child runs (an operator's).

        Raises:
            ApiError: 409 ``session_busy`` while a turn is unfinished.
        """
        body = await self._call("DELETE", f"/v1/sessions/{_seg(session_id)}")
        return DeletedSession.from_dict(body)

    async def events(self, run_id: str, *, after: int = 0) -> AsyncIterator[StreamEvent]:
        """The run's events after ``after`` as they are written, until ``run.finished``.

        Yields each :class:`RunEvent` of the log once, in order, and the
        :class:`ModelDelta` pieces the server sends between them. A dropped
        connection (or a server that stops) is reconnected with
        ``Last-Event-ID``, so no event is missed or repeated; pieces sent while
        it was down are lost (the step's ``model.result`` has the whole reply).
        A run waiting for a person keeps the stream open: stop reading at
        ``run.waiting`` to see it wait.

        Raises:
            ApiError: The server refused the stream (404 for a run not of the
                tenant), or did not answer (or answered 503) ``reconnects``
                times in a row.
        """
        last = after
        failures = 0
        while True:
            try:
                async with contextlib.aclosing(self._stream_once(run_id, last)) as stream:
                    async for event in stream:
                        if isinstance(event, RunEvent):
                            last, failures = event.seq, 0
                        yield event
                        if event.type == FINISHED:
                            return
            except ApiError as exc:
                if exc.status not in _AGAIN:
                    raise
                failures += 1
                if failures > self._reconnects:
                    raise
            else:
                # The stream ended without the run's end: a stopping server, or a run
                # that had ended before the event asked for.
                if await self._ended_by(run_id, last):
                    return
                failures += 1
                if failures > self._reconnects:
                    raise ApiError(0, "unreachable", f"the stream of run {run_id} keeps ending")
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))

    async def _ended_by(self, run_id: str, seq: int) -> bool:
        """Whether the run ended with event ``seq`` or before (not: no answer now)."""
        try:
            detail = await self.get_run(run_id)
        except ApiError as exc:
            if exc.status not in _AGAIN:
                raise
            return False
        return detail.run.finished and detail.last_seq <= seq

    async def _stream_once(self, run_id: str, after: int) -> AsyncGenerator[StreamEvent, None]:
        """One connection's events; ``ApiError`` 0 when the connection drops."""
        url = f"{self.base_url}/v1/runs/{_seg(run_id)}/events"
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        # Keep-alives come every heartbeat (15 s): a stream silent far longer is dead.
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=self._timeout)
        try:
            async with self._session().get(
                url, headers=headers, timeout=timeout, proxy=self._proxy
            ) as response:
                if response.status >= 400:
                    raise _refusal(response, await response.read())
                async with contextlib.aclosing(read_sse(response.content.iter_any())) as messages:
                    async for message in messages:
                        data = _json.loads(message.data) if message.data else {}
                        if message.event == DELTA:
                            yield ModelDelta.from_dict(data)
                        elif message.id is not None:
                            yield RunEvent.from_dict(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(self.base_url, exc) from None


def _refusal(response: aiohttp.ClientResponse, body: bytes) -> ApiError:
    """The :class:`ApiError` of an error answer (the API's shape, or whatever came)."""
    try:
        error = _json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    retry = response.headers.get("Retry-After")
    message = (
        error.get("message") or body.decode("utf-8", errors="replace")[:200] or response.reason
    )
    return ApiError(
        response.status, str(error.get("code") or "error"), str(message),
        issues=error.get("issues") or (), param=error.get("param"),
        retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
    )  # fmt: skip


def _unreachable(base_url: str, exc: BaseException) -> ApiError:
    why = str(exc) or type(exc).__name__
    return ApiError(0, "unreachable", f"the server {base_url} does not answer: {why}")
