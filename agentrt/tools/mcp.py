"""The ``mcp`` tool kind: the tools of one Model Context Protocol server.

Needs the MCP SDK (``pip install "agentrt[mcp]"``). Works with servers of every
protocol era the SDK speaks: it probes for the 2026-07-28 revision and falls
back to the initialize handshake of earlier ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from agentrt import _json
from agentrt._text import count
from agentrt._version import __version__
from agentrt.errors import ToolError, UsageError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext, ToolResult

try:
    from mcp import Client, MCPError, StdioServerParameters
    from mcp import types as mt
    from mcp.client.session import IncomingMessage
    from mcp.client.subscriptions import Subscription, SubscriptionLost
    from mcp.types.version import MODERN_PROTOCOL_VERSIONS
except ImportError:  # the SDK is an optional extra
    raise UsageError(
        'Tools of kind mcp need the MCP SDK; install it with: pip install "agentrt[mcp]"'
    ) from None

__all__ = ["IDEMPOTENCY_META_KEY", "McpToolSet"]

IDEMPOTENCY_META_KEY = "agentrt.dev/idempotency-key"
"""The request ``_meta`` key that carries :attr:`ToolContext.idempotency_key` to the server."""

# Start + handshake, and tools/list, when the spec sets no timeout_s. Calls use
# timeout_s or the SDK's default (none; the engine's step timeout still applies).
_CONNECT_TIMEOUT_S = 60.0
# Ending a session politely (the HTTP DELETE of its id, the server process's own
# exit) may take this long before the session is cut off.
_CLOSE_TIMEOUT_S = 5.0
_MAX_PAGES = 100  # a tools/list cursor that never ends must not hang a model step
_TASK_ONLY = (
    "it can only be called as an MCP task (execution.taskSupport: required), "
    "which agentrt's MCP client does not support"
)
_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(eq=False)
class _Connection:
    """One session with the server, owned by one background task.

    Cancelling ``serving`` ends the session the way the protocol asks (the SDK's
    context managers exit normally: a streamable-HTTP session is deleted on the
    server, a stdio server's input is closed); cancelling ``scope`` cuts it off.
    """

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    serving: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    client: Client | None = None
    task: asyncio.Task[None] | None = None
    watched: bool = False  # the server will tell us when its tool list changes
    alive: bool = True
    error: Exception | None = None


class McpToolSet:
    """A Tool of kind ``mcp``: offers and calls the tools of one MCP server.

    The session (and, for ``command``, the server process) starts on first use,
    is reused by every call and run of this runtime, and ends on :meth:`close`:
    a streamable-HTTP session with an id is deleted on the server (HTTP
    ``DELETE``), a stdio server's input is closed so that it exits.
    If the server process dies or the connection drops, the call in flight fails
    with a retryable ``ToolError`` and the next use starts a new session.

    One background task owns the SDK's async context managers, because anyio
    cancel scopes must be entered and exited by the same task; calls are sent
    from the callers' tasks over that session, which multiplexes concurrent
    requests by id, so parallel tool calls are safe.

    Tools are discovered at run time. A ``tools/list`` costs about a millisecond
    over stdio (more than the engine's whole per-step overhead), so the list is
    cached while the server has promised to announce changes (``listChanged``:
    a ``subscriptions/listen`` stream on 2026-07-28 connections, the
    ``notifications/tools/list_changed`` message before). The cache is dropped
    on such an announcement, on reconnect, and after every call of one of its
    tools, since a call is what usually changes the list and its announcement
    is not ordered with its result. Without the promise every model step lists
    the tools again.

    ``environ`` is where ``${env:NAME}`` references in ``mcp.env`` are looked
    up (a Runtime passes its settings' environment); by default none is set.
    """

    dynamic = True
    _mode = "auto"  # protocol negotiation; tests pin "legacy" to exercise the handshake era

    def __init__(
        self, name: str, spec: ToolSpec, *, environ: Mapping[str, str] | None = None
    ) -> None:
        if spec.mcp is None:
            raise UsageError(f"Tool {name}: kind 'mcp' needs an `mcp:` section")
        self.name = name
        self.spec = spec
        self._mcp = spec.mcp
        self._environ: Mapping[str, str] = environ or {}  # resolves ``${env:NAME}`` in mcp.env
        self.transport = "stdio" if self._mcp.command else "streamable-http"
        self.server = shlex.join(self._mcp.command) if self._mcp.command else _public(self._mcp.url)
        self._allowed = None if self._mcp.tools is None else set(self._mcp.tools)
        self._timeout_s = spec.timeout_s or _CONNECT_TIMEOUT_S  # to start and to list
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()  # one connect at a time, whatever the concurrency
        self._tools: list[ToolDef] | None = None
        self._withheld: dict[str, str] = {}  # of the last listing: tool -> why it is left out
        self._generation = 0  # bumped on every change: a listing in flight must not be cached

    # --- the ToolSet protocol ---------------------------------------------------

    async def definitions(self) -> list[ToolDef]:
        """The server's tools (those in ``mcp.tools`` when it is given), as offered now.

        Raises:
            ToolError: the server cannot be started or reached, or will not list.
        """
        for attempt in (1, 2):
            conn = await self._connection()
            if conn.watched and self._tools is not None:
                return self._tools
            generation = self._generation
            try:
                tools, self._withheld = await self._list(conn)
            except ToolError:
                if attempt == 1 and not conn.alive:
                    continue  # listing has no side effects: reconnect once and list again
                raise
            if generation == self._generation:
                self._tools = tools
            return tools
        raise AssertionError("unreachable")  # pragma: no cover

    def withheld(self) -> dict[str, str]:
        """The server's tools the last :meth:`definitions` left out, and why.

        A tool whose ``execution.taskSupport`` is ``required`` may only be called
        as an MCP task (2025-11-25 servers); the MCP SDK this runtime uses has no
        client for tasks, so such a tool is not offered rather than offered and
        always failing.
        """
        return dict(self._withheld)

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Call ``tool``, passing the idempotency key in the request ``_meta``.

        Returns:
            Text parts joined by newlines, other parts summarised; ``isError``
            results come back with ``is_error`` set.

        Raises:
            ToolError: a transport or protocol failure (retryable when the
                connection was lost or the call timed out).
        """
        if self._allowed is not None and tool not in self._allowed:
            raise ToolError(f"tool {tool!r} is not offered by MCP server {self.name!r}")
        conn = await self._connection()
        assert conn.client is not None
        meta = cast(mt.RequestParamsMeta, {IDEMPOTENCY_META_KEY: ctx.idempotency_key})
        started = time.perf_counter()
        try:
            result = await conn.client.call_tool(
                tool, arguments, read_timeout_seconds=self.spec.timeout_s, meta=meta
            )
        except Exception as exc:
            raise self._failure(conn, exc, f"calling {tool!r}") from None
        finally:
            self._changed()
        trace = {
            "server": self.server,
            "transport": self.transport,
            "tool": tool,
            "duration_s": round(time.perf_counter() - started, 6),
        }
        return ToolResult(_render(result), result.is_error, trace)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """MCP has no way to ask whether a call happened: always unknown."""
        return None

    async def close(self) -> None:
        """End the session and stop the server process (the engine calls this on close)."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self._stop(conn)

    # --- the session ------------------------------------------------------------

    async def _connection(self) -> _Connection:
        """The live session, started (or restarted after a failure) when there is none."""
        async with self._lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if conn is not None:
                await self._stop(conn)  # reap the dead one before a new process starts
            client = self._client()
            conn = self._conn = _Connection()
            self._changed()
            conn.task = asyncio.create_task(
                self._own(conn, client), name=f"agentrt-mcp-{self.name}"
            )
            try:
                async with asyncio.timeout(self._timeout_s):
                    await conn.ready.wait()
            except TimeoutError:
                conn.error = TimeoutError(f"no answer within {self._timeout_s:g}s")
            if conn.error is not None or conn.client is None:
                error, self._conn = conn.error, None
                await self._stop(conn)
                raise ToolError(
                    f"MCP server {self.name!r} ({self.server}) could not be started: "
                    f"{_describe(error)}",
                    retryable=True,
                )
            return conn

    async def _own(self, conn: _Connection, client: Client) -> None:
        """The session's task: enters, holds and exits the SDK's context managers.

        Stopped by cancelling ``conn.serving`` (the context managers then exit
        outside any cancellation, so the SDK can end the session on the server)
        or ``conn.scope``; both are anyio scopes (not ``Task.cancel``) so the
        SDK's shielded shutdown of the server process runs to the end.
        """
        try:
            with conn.scope:
                async with contextlib.AsyncExitStack() as stack:
                    await stack.enter_async_context(client)
                    subscription = await self._watch(client, conn, stack)
                    conn.client = client
                    conn.ready.set()
                    with conn.serving:
                        if subscription is not None and not await self._follow(subscription, conn):
                            return  # the stream was lost with the connection: reconnect
                        await anyio.sleep_forever()
        except Exception as exc:  # reported to whoever waits for ready
            conn.error = exc
        finally:
            conn.alive = False
            conn.ready.set()
            if self._conn is conn:
                self._changed()

    async def _watch(
        self, client: Client, conn: _Connection, stack: contextlib.AsyncExitStack
    ) -> Subscription | None:
        """Arrange to hear of tool list changes, if the server promises to announce them."""
        tools = client.server_capabilities.tools
        if not (tools and tools.list_changed):
            return None
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            conn.watched = True  # notifications/tools/list_changed: see _on_message
            return None
        try:
            subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))
        except Exception:  # announced but not served: list on every step instead
            return None
        conn.watched = subscription.honored.tools_list_changed is True
        return subscription

    async def _follow(self, subscription: Subscription, conn: _Connection) -> bool:
        """Drop the cache on every change event. False when the stream was lost."""
        try:
            async for _event in subscription:
                self._changed()
        except SubscriptionLost:
            return False
        conn.watched = False  # the server ended the stream; the session lives on, unwatched
        self._changed()
        return True

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            self._changed()  # handshake era: read in order with the results around it

    def _client(self) -> Client:
        target: StdioServerParameters | str
        if self._mcp.command:
            # The SDK gives the server only a safe part of our environment (PATH,
            # HOME, ...), plus ``mcp.env``.
            command, *args = self._mcp.command
            target = StdioServerParameters(command=command, args=args, env=self._env())
        else:
            assert self._mcp.url is not None
            target = self._mcp.url
        return Client(
            target,
            mode=self._mode,
            message_handler=self._on_message,
            cache=None,  # the tool list is cached here, by the rules above
            client_info=mt.Implementation(name="agentrt", version=__version__),
        )

    async def _stop(self, conn: _Connection) -> None:
        """End the session: politely when it was serving, then cut off if that hangs."""
        conn.alive = False
        if conn.client is not None:
            conn.serving.cancel()
        else:
            conn.scope.cancel()  # still starting: nothing to end on the server
        if conn.task is None:
            return
        # Shielded: the server is stopped even if our caller is cancelled.
        done, _ = await asyncio.shield(asyncio.wait({conn.task}, timeout=_CLOSE_TIMEOUT_S))
        if not done:
            conn.scope.cancel()
            await asyncio.shield(conn.task)

    async def _list(self, conn: _Connection) -> tuple[list[ToolDef], dict[str, str]]:
        """The tools to offer, and those left out with why."""
        assert conn.client is not None
        found: list[ToolDef] = []
        withheld: dict[str, str] = {}
        cursor: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                for _ in range(_MAX_PAGES):
                    page = await conn.client.list_tools(cursor=cursor)
                    for t in page.tools:
                        if self._allowed is not None and t.name not in self._allowed:
                            continue
                        if t.execution is not None and t.execution.task_support == "required":
                            withheld[t.name] = _TASK_ONLY
                            continue
                        found.append(ToolDef(t.name, t.description or "", t.input_schema))
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except Exception as exc:
            raise self._failure(conn, exc, "listing tools") from None
        return found, withheld

    def _failure(self, conn: _Connection, exc: Exception, doing: str) -> ToolError:
        """A clear ToolError for a transport or protocol failure; drops a dead session."""
        where = f"MCP server {self.name!r}"
        code = exc.error.code if isinstance(exc, MCPError) else None
        if isinstance(exc, TimeoutError) or code == mt.REQUEST_TIMEOUT:
            return ToolError(f"{where}: {doing} timed out", retryable=True)
        lost = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
        if code == mt.CONNECTION_CLOSED or isinstance(exc, lost):
            conn.alive = False
            conn.scope.cancel()
            return ToolError(
                f"{where}: the connection closed while {doing} (did the server exit?); "
                "a new session starts on next use",
                retryable=True,
            )
        message = exc.error.message if isinstance(exc, MCPError) else _describe(exc)
        return ToolError(f"{where}: {doing} failed: {message}")

    def _changed(self) -> None:
        self._tools = None
        self._generation += 1

    def _env(self) -> dict[str, str]:
        """``mcp.env`` with ``${env:NAME}`` resolved now; values never reach a message."""
        env = self._mcp.env
        environ = self._environ
        missing = {n for value in env.values() for n in _ENV_REF.findall(value)} - set(environ)
        if missing:
            raise ToolError(
                f"MCP server {self.name!r}: mcp.env refers to environment variables "
                f"that are not set: {', '.join(sorted(missing))}"
            )
        return {k: _ENV_REF.sub(lambda m: environ[m[1]], v) for k, v in env.items()}


def _render(result: mt.CallToolResult) -> str:
    """Text parts as they are, other parts as a short summary the model can read."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mt.TextContent):
            parts.append(block.text)
        elif isinstance(block, mt.ImageContent | mt.AudioContent):
            parts.append(f"[{block.mime_type} {count(_size(block.data), 'byte')}]")
        elif isinstance(block, mt.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block.resource, mt.TextResourceContents):
            parts.append(block.resource.text)
        else:
            kind = block.resource.mime_type or "application/octet-stream"
            parts.append(
                f"[{kind} {count(_size(block.resource.blob), 'byte')}: {block.resource.uri}]"
            )
    if not parts and result.structured_content is not None:
        parts.append(_json.dumps_str(result.structured_content))
    return "\n".join(parts)


def _size(data: str) -> int:
    """Decoded size of base64 ``data``, without decoding it."""
    return len(data.strip().rstrip("=")) * 3 // 4


def _public(url: str | None) -> str:
    """The URL without credentials, for traces and messages."""
    scheme, sep, rest = (url or "").partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"


def _describe(exc: BaseException | None) -> str:
    """The innermost message of an exception (anyio wraps failures in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "the session ended before it was ready"
    return str(exc) or type(exc).__name__
