"""The ``a2a`` tool kind: a remote agent reached over the Agent2Agent protocol.

Needs the official A2A SDK (``pip install "agentrt[a2a]"``). The tool reads the
remote agent's card once, then speaks what the card offers: A2A 1.0 (or 0.3)
over JSON-RPC or HTTP+JSON. Each call sends the model's message as one task
and returns the task's answer: the text of its artifacts, else of its status
message.

**Idempotency.** The message's ``messageId`` is the call's
:attr:`~agentrt.tools.base.ToolContext.idempotency_key`, the same on every
retry and resume of the call. The protocol lets a server recognise a message
it has seen by its id but does not require it: an agentrt server does (the same
message id to the same agent of a tenant gives the same task, see
docs/server.md), so a run resumed after a crash that sends the call again gets
the first task's answer, and nothing runs twice. Mark such a Tool
``idempotent: true`` so that resume sends it again; leave it unmarked for a
server that does not promise this, and an interrupted call waits for a person
(``agentrt resolve``) instead.

Headers (``Authorization: Bearer ${env:KEY}``) are resolved at each call, sent
with every request (the card's too) and never written anywhere: errors show
``[redacted]`` where a resolved secret would appear. Requests go through the
proxy that the settings' ``HTTP_PROXY``/``HTTPS_PROXY`` name, unless
``NO_PROXY`` lists the host. Cancelling the call (the run was cancelled) leaves
the remote task as it is: the protocol has no owner for it but its sender, and
a run that resumes the call wants that task's answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from agentrt import _json
from agentrt._proxy import proxy_for
from agentrt._text import count
from agentrt.errors import ToolError, UsageError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext, ToolResult
from agentrt.tools.http import CallSecrets, SecretResolver, check_refs

try:
    import httpx
    from a2a.client import (
        A2ACardResolver,
        A2AClientError,
        AgentCardResolutionError,
        Client,
        ClientCallContext,
        ClientConfig,
        ClientFactory,
    )
    from a2a.helpers import get_data_parts, new_data_part
    from a2a.types.a2a_pb2 import (
        AgentCard,
        Artifact,
        GetTaskRequest,
        Message,
        Part,
        Role,
        SendMessageRequest,
        StreamResponse,
        SubscribeToTaskRequest,
        Task,
        TaskState,
    )
    from a2a.utils.errors import A2AError
except ImportError:  # the SDK is an optional extra
    raise UsageError(
        'Tools of kind a2a need the A2A SDK; install it with: pip install "agentrt[a2a]"'
    ) from None

__all__ = ["DEFAULT_TIMEOUT_S", "A2aToolSet"]

DEFAULT_TIMEOUT_S: Final = 300.0
"""How long a call waits for the remote task when the Tool sets no ``timeout_s`` (the
agent's ``loop.step_timeout_s`` caps it either way)."""

_CARD_PATH: Final = "/.well-known/agent-card.json"
_DONE: Final = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    }
)
_POLL_S: Final = (0.5, 1.0, 2.0, 5.0)  # GetTask backoff for an agent that cannot stream
_SCHEMA: Final = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "what to ask the agent"}},
    "required": ["message"],
}


class A2aToolSet:
    """A Tool of kind ``a2a``: one tool, named after the resource, that asks a remote agent.

    Its argument is ``message`` (the spec's ``input_schema`` may add others; they go
    to the remote agent as a data part). The card is read on the first call and kept;
    a call that fails on the connection reads it again on the next.

    Args:
        name: The Tool resource's name.
        spec: Its spec (kind ``a2a``).
        secrets: Resolves secret references; by default from ``environ`` and the
            file system.
        environ: The settings' environment: proxies and ``${env:NAME}`` secrets.
    """

    dynamic = False

    def __init__(
        self,
        name: str,
        spec: ToolSpec,
        *,
        secrets: SecretResolver | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if spec.a2a is None:
            raise UsageError(f"Tool {name}: kind 'a2a' needs an `a2a:` section")
        self.name = name
        self.spec = spec
        self._a2a = spec.a2a
        for header, value in self._a2a.headers.items():
            check_refs(name, f"header {header!r}", value)
        description = spec.description or f"Ask the A2A agent at {self._a2a.url}"
        self._definition = ToolDef(name, description, spec.input_schema or _SCHEMA)
        self._resolver = secrets or SecretResolver(environ)
        self._environ: Mapping[str, str] = environ or {}
        self._timeout_s = spec.timeout_s or DEFAULT_TIMEOUT_S
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None
        self._card: AgentCard | None = None
        self._lock = asyncio.Lock()

    async def definitions(self) -> list[ToolDef]:
        """The one tool this remote agent is."""
        return [self._definition]

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Send the message as a task and wait for the task's answer.

        Returns:
            The answer's text; an error result when the task failed, was
            cancelled or rejected, or needs input or authorisation the tool
            cannot give. The trace names the task, its context and state, and
            the protocol spoken.

        Raises:
            ToolError: The card cannot be read, the agent refused the request, or
                the connection failed (retryable, as the message id makes a second
                send the same message).
        """
        if tool != self.name:
            raise ToolError(f"Tool {self.name!r} offers no tool {tool!r}")
        request = SendMessageRequest(message=_message(arguments, ctx.idempotency_key))
        secrets = CallSecrets(self._resolver)
        headers = {key: secrets.header(key, value) for key, value in self._a2a.headers.items()}
        context = ClientCallContext(service_parameters=headers, timeout=self._timeout_s)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                client = await self._connect(headers)
                answer = await self._ask(client, request, context)
        except TimeoutError:
            raise ToolError(
                f"the A2A agent at {self._a2a.url} gave no answer within {self._timeout_s:g}s",
                retryable=True,
            ) from None
        except (A2AError, httpx.HTTPError, ValueError) as exc:
            await self._forget()
            problem = secrets.redact(f"{type(exc).__name__}: {exc}")
            raise ToolError(
                f"the A2A agent at {self._a2a.url} failed: {problem}", retryable=_transient(exc)
            ) from None
        return _result(answer, self._card, time.perf_counter() - started)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """No lookup: the protocol cannot find a task by its message id (resend it)."""
        return None

    async def close(self) -> None:
        """Close the connection pool. Idempotent; a later call reads the card again."""
        await self._forget()

    async def _connect(self, headers: dict[str, str]) -> Client:
        """The SDK's client for the agent, reading its card the first time."""
        async with self._lock:
            if self._client is not None:
                return self._client
            url = self._a2a.url
            proxy = proxy_for(url, self._environ)
            # trust_env=False: the settings' environment decides the proxy, not the process's.
            http = httpx.AsyncClient(trust_env=False, proxy=proxy, timeout=self._timeout_s)
            try:
                base, path = _card_location(url)
                card = await A2ACardResolver(http, base, path).get_agent_card(
                    http_kwargs={"headers": headers}
                )
                config = ClientConfig(httpx_client=http, streaming=self._a2a.stream)
                self._client = ClientFactory(config).create(card)
            except BaseException:
                await http.aclose()
                raise
            self._http, self._card = http, card
            return self._client

    async def _forget(self) -> None:
        async with self._lock:
            client, http = self._client, self._http
            self._client = self._http = self._card = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()

    async def _ask(
        self, client: Client, request: SendMessageRequest, context: ClientCallContext
    ) -> Task | Message:
        """The task the message started, followed to its end (or the agent's reply)."""
        task = await _follow(client.send_message(request, context=context), None)
        if isinstance(task, Message) or task.status.state in _DONE:
            return task
        # A server may answer before the task ends (a wait it caps): follow it further.
        card = self._card
        if self._a2a.stream and card is not None and card.capabilities.streaming:
            subscribe = SubscribeToTaskRequest(id=task.id)
            followed = await _follow(client.subscribe(subscribe, context=context), task)
            if isinstance(followed, Task) and followed.status.state in _DONE:
                return followed
            task = followed if isinstance(followed, Task) else task
        polls = 0
        while task.status.state not in _DONE:  # the call's timeout ends this
            await asyncio.sleep(_POLL_S[min(polls, len(_POLL_S) - 1)])
            polls += 1
            task = await client.get_task(GetTaskRequest(id=task.id), context=context)
        return task


async def _follow(events: AsyncIterator[StreamResponse], task: Task | None) -> Task | Message:
    """The task as a stream of its updates leaves it (or the one message answered)."""
    try:
        async for event in events:
            if event.HasField("message"):
                return event.message
            if event.HasField("task"):
                task = Task()
                task.CopyFrom(event.task)
            elif task is None:
                raise ValueError("the agent sent a task update before the task")
            elif event.HasField("status_update"):
                task.status.CopyFrom(event.status_update.status)
            elif event.HasField("artifact_update"):
                update = event.artifact_update
                _add_artifact(task, update.artifact, update.append)
    finally:
        if isinstance(events, AsyncGenerator):  # close the stream now, not at collection
            await events.aclose()
    if task is None:
        raise ValueError("the agent answered with neither a task nor a message")
    return task


def _transient(exc: Exception) -> bool:
    """Whether sending again may help: the connection failed, not the request.

    Sending again is safe: it is the same message (the same id) again.
    """
    if isinstance(exc, AgentCardResolutionError):
        return exc.status_code is None or exc.status_code >= 500
    # The agent's own refusals (JSON-RPC errors) are A2AError but not A2AClientError.
    return isinstance(exc, A2AClientError | httpx.HTTPError) and "HTTP Error 4" not in str(exc)


def _add_artifact(task: Task, artifact: Artifact, append: bool) -> None:
    """An artifact update applied: a new artifact, or more parts of one already sent."""
    for known in task.artifacts:
        if known.artifact_id == artifact.artifact_id:
            if append:
                known.parts.extend(artifact.parts)
            else:
                known.CopyFrom(artifact)
            return
    task.artifacts.append(artifact)


def _message(arguments: dict[str, Any], message_id: str) -> Message:
    """The model's arguments as the user's message, identified by the call's key."""
    text = arguments.get("message")
    if not isinstance(text, str) or not text.strip():
        raise ToolError("give the agent a `message` (text)")
    parts = [Part(text=text)]
    rest = {k: v for k, v in arguments.items() if k != "message"}
    if rest:
        parts.append(new_data_part(rest))
    return Message(message_id=message_id, role=Role.ROLE_USER, parts=parts)


def _card_location(url: str) -> tuple[str, str]:
    """Where the card is: (base, path) for the SDK's resolver. A URL ending in ``.json``
    is the card itself; any other is the agent's, its card at the well-known path."""
    if urlsplit(url).path.endswith(".json"):
        return url, "/"  # "/": the base URL as it is
    return url.rstrip("/"), _CARD_PATH


def _text(parts: Any) -> str:
    """The parts as text: text as it is, data as JSON, files by their URL or name."""
    out = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            out.append(part.text)
        elif kind == "data":
            out.append(_json.dumps_str(get_data_parts([part])[0]))
        elif kind == "url":
            out.append(f"[file {part.filename or part.url}: {part.url}]")
        elif kind == "raw":
            out.append(f"[file {part.filename or 'unnamed'}: {count(len(part.raw), 'byte')}]")
    return "\n".join(out)


def _result(answer: Task | Message, card: AgentCard | None, seconds: float) -> ToolResult:
    """What the model sees of the task's end, and the trace of the call."""
    trace: dict[str, Any] = {"duration_s": round(seconds, 3)}
    if card is not None:
        trace["agent"] = card.name
    if isinstance(answer, Message):
        trace["reply"] = answer.message_id
        return ToolResult(_text(answer.parts), trace=trace)
    state = TaskState.Name(answer.status.state).removeprefix("TASK_STATE_").lower()
    trace.update(task=answer.id, context=answer.context_id, state=state)
    text = "\n".join(_text(a.parts) for a in answer.artifacts if a.parts)
    note = _text(answer.status.message.parts) if answer.status.HasField("message") else ""
    if answer.status.state == TaskState.TASK_STATE_COMPLETED:
        return ToolResult(text or note, trace=trace)
    what = {"input_required": "needs input", "auth_required": "needs authorisation"}
    said = state.replace("_", " ") if state not in what else what[state]
    detail = f": {note}" if note else ""
    return ToolResult(f"the agent's task {answer.id} {said}{detail}", True, trace)
