"""A local OpenAI-compatible server that answers from a script, for tests.

Real HTTP on the loopback interface, so a client under test goes through its
whole network path. Replies come from
:func:`~agentrt.models.scripted.scripted_reply`; failures and slow responses
can be injected while it runs, as can replies that a server should not send
(cut off by the output limit, impossible usage), and every request body is logged.
A request with ``stream: true`` is answered as a stream of chunks, a word at a
time, with the usage in a last chunk when ``stream_options.include_usage`` asks.

In a test::

    async with ModelTestServer(rules) as server:
        client = OpenAIClient(base_url=server.url, model="m")
        ...

From synchronous code (or to serve a child process), use
:meth:`ModelTestServer.start_in_thread` and :meth:`ModelTestServer.stop_thread`.
As a process::

    python -m agentrt.models.testserver --port 0 --rules rules.yaml

prints ``listening http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web
from pydantic import ValidationError

from agentrt._json import dumps, loads
from agentrt.models._chunks import stream_events
from agentrt.models._test_faults import (
    JSON,
    Delay,
    Fault,
    Reply,
    error,
    invalid_tool,
    seconds_text,
    take,
)
from agentrt.models.prefix_cache import PrefixCache
from agentrt.models.scripted import scripted_reply
from agentrt.spec.resources import ScriptedRule

__all__ = ["ModelTestServer", "main"]


class ModelTestServer:
    """An OpenAI-compatible Chat Completions server driven by a script.

    Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models`` and
    ``GET /healthz``; Azure OpenAI's deployment form too, ``POST
    /openai/deployments/{deployment}/chat/completions?api-version=...``
    (404 without ``api-version``, as Azure answers). Like OpenAI, it refuses
    (400) a request offering a tool whose name does not match
    ``^[a-zA-Z0-9_-]{1,64}$``. Every control below may be used while the
    server runs, from any thread.

    Args:
        rules: The script (see :func:`~agentrt.models.scripted.scripted_reply`).
        latency_s: Added before every completion response.
        chunk_delay_s: Added between the chunks of a streamed response.
        prefix_cache: Simulate a provider's prefix cache (see
            :mod:`agentrt.models.prefix_cache`): each reply reports in
            ``usage.prompt_tokens_details.cached_tokens`` the prompt tokens it
            shares with an earlier request this server answered.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.

    Attributes:
        latency_s: Delay before every completion response; may be changed.
        chunk_delay_s: Delay between a streamed response's chunks; may be changed.
        completions_served: Number of successful completions sent.
        prefix_cache: The simulated prefix cache, or ``None``.
    """

    def __init__(
        self,
        rules: Sequence[ScriptedRule] = (),
        *,
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        prefix_cache: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.prefix_cache = PrefixCache() if prefix_cache else None
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.host = host
        self.port = port
        self.completions_served = 0
        self._rules: tuple[ScriptedRule, ...] = tuple(rules)
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._delays: deque[Delay] = deque()
        self._replies: deque[Reply] = deque()
        self._sequence = 0
        self._runner: web.AppRunner | None = None
        self._sleeping: set[asyncio.Task[Any]] = set()
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL (``http://HOST:PORT/v1``).

        Raises:
            RuntimeError: The server is not running.
        """
        if self._url is None:
            raise RuntimeError("ModelTestServer is not running")
        return self._url

    async def start(self) -> str:
        """Start serving on the current event loop.

        Returns:
            The base URL, ``http://HOST:PORT/v1``.
        """
        if self._runner is not None:
            return self.url
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/healthz", self._health)
        # handler_cancellation: a client that gives up (a timeout test) ends
        # its handler instead of leaving it sleeping until shutdown.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"http://{host}:{port}/v1"
        return self._url

    async def stop(self) -> None:
        """Stop serving and close connections. Idempotent."""
        runner, self._runner = self._runner, None
        self._url = None
        if runner is None:
            return
        for task in list(self._sleeping):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> ModelTestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_in_thread(self) -> str:
        """Start serving from a daemon thread with its own event loop.

        For synchronous tests and for serving child processes. Pair with
        :meth:`stop_thread`.

        Returns:
            The base URL, ``http://HOST:PORT/v1``.
        """
        if self._thread is not None:
            return self.url
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name="agentrt-model-test-server", daemon=True
        )
        thread.start()
        try:
            url = asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        self._thread, self._thread_loop = thread, loop
        return url

    def stop_thread(self) -> None:
        """Stop a server started with :meth:`start_in_thread`. Idempotent."""
        thread, loop = self._thread, self._thread_loop
        self._thread = self._thread_loop = None
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    # --- controls ------------------------------------------------------------------

    def set_rules(self, rules: Sequence[ScriptedRule]) -> None:
        """Replace the script; later requests use the new rules."""
        self._rules = tuple(rules)

    def inject(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Make the next ``count`` completion requests fail with ``status``.

        Injections queue up: ``inject(429)`` then ``inject(503)`` fails the
        next request with 429 and the one after with 503.

        Args:
            status: HTTP status to answer with.
            count: How many requests to fail.
            retry_after: Sent as the ``Retry-After`` header (seconds) when given.
            body: Response body, sent verbatim as JSON content; an
                OpenAI-style error object when omitted. With ``status=200``
                this serves a malformed completion.
        """
        if count > 0:
            with self._lock:
                self._faults.append(Fault(status, count, retry_after, body))

    def inject_delay(self, seconds: float, count: int = 1) -> None:
        """Delay the next ``count`` completion responses by ``seconds`` (on top of latency).

        Args:
            seconds: Extra delay per response.
            count: How many responses to delay.
        """
        if count > 0:
            with self._lock:
                self._delays.append(Delay(seconds, count))

    def inject_reply(
        self,
        *,
        count: int = 1,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        cut_after: int | None = None,
    ) -> None:
        """Change the next ``count`` scripted replies; their content still comes from the script.

        Args:
            count: How many replies to change.
            finish_reason: Sent instead of the script's (``"length"``: a reply cut
                off by the output limit).
            usage: Sent as the ``usage`` object instead of the counted one (e.g.
                ``{"prompt_tokens": -5}``: a server reporting impossible usage).
            cut_after: A streamed reply's connection is closed after this many
                chunks (a stream lost midway); a reply not streamed is not changed.
        """
        if count > 0:
            with self._lock:
                self._replies.append(Reply(count, finish_reason, usage, cut_after))

    def clear_injections(self) -> None:
        """Drop all pending injected failures, delays and changed replies."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._replies.clear()

    # --- observation -------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Completion request bodies received, in arrival order.

        Each is the parsed JSON body plus ``"_status"``: the HTTP status it
        was answered with (``None`` while in flight), ``"_at"``: when it came
        (Unix seconds), ``"_path"``, ``"_query"``
        (a dict) and ``"_headers"`` (a dict, names in lower case). Requests
        that failed by injection also carry ``"_injected": True``. The list is
        a snapshot.
        """
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        """Forget logged requests and reset :attr:`completions_served`."""
        with self._lock:
            self._log.clear()
            self.completions_served = 0

    # --- handlers -----------------------------------------------------------------

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("api-version"):
            with self._lock:
                self._log.append({"_path": request.path, "_query": {}, "_status": 404})
            return error(404, "Resource not found")
        return await self._completions(request)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            entry: dict[str, Any] = {"_raw": raw.decode("utf-8", "replace"), "_status": 400}
            with self._lock:
                self._log.append(entry)
            return error(400, "request body must be a JSON object with a `messages` list")

        body["_status"] = None
        body["_at"] = time.time()
        body["_path"] = request.path
        body["_query"] = dict(request.query)
        body["_headers"] = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._log.append(body)
            fault = take(self._faults)
            delay = take(self._delays)
            changed = None if fault is not None else take(self._replies)
            self._sequence += 1
            sequence = self._sequence

        pause = self.latency_s + (delay.seconds if delay is not None else 0.0)
        if pause > 0:
            await self._pause(pause)

        if fault is not None:
            body["_status"] = fault.status
            body["_injected"] = True
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = seconds_text(fault.retry_after)
            if fault.body is not None:
                return web.Response(
                    status=fault.status, text=fault.body, content_type=JSON, headers=headers
                )
            return error(fault.status, f"injected HTTP {fault.status}", headers)

        if (problem := invalid_tool(body.get("tools"))) is not None:
            body["_status"] = 400
            return error(400, problem)

        try:
            reply = scripted_reply(
                self._rules, body["messages"], model=str(body.get("model") or "scripted")
            )
        except (AttributeError, TypeError) as exc:
            body["_status"] = 400
            return error(400, f"malformed messages: {exc}")

        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in reply.tool_calls]
        finish = reply.finish_reason
        usage = self._usage(body, reply.input_tokens, reply.output_tokens)
        if changed is not None:
            finish = changed.finish_reason or finish
            usage = changed.usage if changed.usage is not None else usage
        payload = {
            "id": f"chatcmpl-{sequence}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        if body.get("stream"):
            cut = changed.cut_after if changed is not None else None
            return await self._stream(request, body, payload, cut)
        body["_status"] = 200
        with self._lock:
            self.completions_served += 1
        return web.Response(body=dumps(payload), content_type=JSON)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        payload: dict[str, Any],
        cut_after: int | None,
    ) -> web.StreamResponse:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        body["_status"] = 200
        for sent, event in enumerate(stream_events(payload, include_usage=include_usage)):
            if cut_after is not None and sent >= cut_after:
                if request.transport is not None:  # lost midway: the body never ends
                    request.transport.close()
                return response
            if sent and self.chunk_delay_s > 0:
                await self._pause(self.chunk_delay_s)
            await response.write(event)
        await response.write_eof()
        with self._lock:
            self.completions_served += 1
        return response

    def _usage(self, body: dict[str, Any], tokens_in: int, tokens_out: int) -> dict[str, Any]:
        """A reply's ``usage``; with the prefix cache, the prompt tokens it served too."""
        usage: dict[str, Any] = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        if self.prefix_cache is not None:
            cached = self.prefix_cache.cached_tokens(body["messages"], body.get("tools"))
            usage["prompt_tokens_details"] = {"cached_tokens": min(cached, tokens_in)}
            self.prefix_cache.served(body["messages"], body.get("tools"))
        return usage

    async def _models(self, request: web.Request) -> web.Response:
        payload = {
            "object": "list",
            "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "agentrt"}],
        }
        return web.Response(body=dumps(payload), content_type=JSON)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def _pause(self, seconds: float) -> None:
        # Tracked so that stop() can cut long injected delays short.
        task = asyncio.current_task()
        if task is not None:
            self._sleeping.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            if task is not None:
                self._sleeping.discard(task)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- process mode ------------------------------------------------------------------


def load_rules(path: str | Path) -> list[ScriptedRule]:
    """Read a YAML file holding a list of rules in the ``ScriptedRule`` shape.

    Args:
        path: The file. An empty file means no rules.

    Returns:
        The validated rules.

    Raises:
        ValueError: The file is not a list of valid rules; the message names
            the rule and field.
    """
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a YAML list of rules, got {type(data).__name__}")
    rules = []
    for index, item in enumerate(data):
        try:
            rules.append(ScriptedRule.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(rule)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ValueError(f"{path}: rule {index}: {problems}") from exc
    return rules


async def _serve(server: ModelTestServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    url = await server.start()
    try:
        sys.stdout.write(f"listening {url}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the test server as a process until SIGTERM or SIGINT.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m agentrt.models.testserver",
        description="OpenAI-compatible test server answering from a script.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--rules", help="YAML file with a list of scripted rules")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per completion")
    parser.add_argument(
        "--prefix-cache", action="store_true", help="report cached_tokens of a prefix cache"
    )
    args = parser.parse_args(argv)
    try:
        rules = load_rules(args.rules) if args.rules else []
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = ModelTestServer(
        rules,
        latency_s=args.latency,
        prefix_cache=args.prefix_cache,
        host=args.host,
        port=args.port,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
