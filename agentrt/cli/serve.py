"""The ``agentrt serve`` command: the control plane's HTTP API over the store.

It also executes runs: those it is asked to start, and (unless
``--no-worker``) queued and stranded ones, like ``agentrt worker``. Any number
of ``serve`` processes over one PostgreSQL store make one service behind a
load balancer: a run, its stream and its idempotency key are the same on each.
SIGTERM or Ctrl-C stops taking requests, lets those in flight end, and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from typing import Any

from agentrt.cli._shared import EXIT_OK, runtime
from agentrt.engine import Runtime
from agentrt.errors import UsageError

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``agentrt serve`` and ``agentrt keys`` to the command line's subcommands."""
    s = sub.add_parser("serve", help="serve the HTTP API (and execute runs)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port to listen on (8080; 0: any)")
    s.add_argument(
        "--concurrency", type=int, default=100, help="queued runs executed here at once (100)"
    )
    s.add_argument(
        "--no-worker", action="store_true", help="execute only the runs started here, no queue"
    )
    s.add_argument("--max-body", type=int, default=1 << 20, help="largest body in bytes (1 MiB)")
    s.add_argument("--rate", type=float, default=50.0, help="requests per second per key (50)")
    s.add_argument("--max-wait", type=float, default=300.0, help="longest wait for a run (300 s)")
    s.add_argument(
        "--heartbeat", type=float, default=15.0, help="keep-alive interval of event streams (15 s)"
    )
    s.add_argument(
        "--body-timeout", type=float, default=30.0,
        help="longest wait for the next part of a request body (30 s; then 408)",
    )  # fmt: skip
    for kind, what in (
        ("module", "Python module (prefix) API resources may import"),
        ("command", "program an API resource's stdio MCP server may start"),
        ("env", "environment variable API resources may read"),
        ("file", "host path (prefix) API resources may read"),
    ):
        s.add_argument(f"--allow-{kind}", action="append", default=[], metavar="VALUE", help=what)
    s.add_argument(
        "--openapi", action="store_true", help="print the API's OpenAPI document and exit"
    )
    s.set_defaults(handler=_cmd_serve)


async def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from agentrt.server.app import create_app
        from agentrt.server.context import HostTrust, ServerLimits
    except ImportError:
        raise UsageError(
            "agentrt serve needs the server extra: pip install 'agentrt[server]'"
        ) from None
    if args.openapi:
        document = create_app(Runtime(args.store)).openapi()
        print(json.dumps(document, indent=2, sort_keys=True))
        return EXIT_OK
    if args.port < 0 or args.concurrency < 1 or args.max_body < 1 or args.rate <= 0:
        raise UsageError("--port, --concurrency, --max-body and --rate take positive numbers")
    if args.heartbeat <= 0 or args.body_timeout <= 0:
        raise UsageError("--heartbeat and --body-timeout take a positive number of seconds")
    limits = ServerLimits(max_body_bytes=args.max_body, max_wait_s=args.max_wait,
                          rate_per_s=args.rate, burst=max(1, int(args.rate * 2)),
                          heartbeat_s=args.heartbeat,
                          body_timeout_s=args.body_timeout)  # fmt: skip
    trust = HostTrust(
        modules=tuple(args.allow_module), commands=tuple(args.allow_command),
        env=tuple(args.allow_env), paths=tuple(args.allow_file),
    )  # fmt: skip
    async with runtime(args, live=False, resume=not args.no_worker) as rt:
        app = create_app(rt, limits=limits, trust=trust)
        config = uvicorn.Config(
            app, host=args.host, port=args.port, log_level="warning", access_log=False,
            lifespan="off", timeout_graceful_shutdown=10,
        )  # fmt: skip
        server = _server(uvicorn, config)
        serving = None if args.no_worker else rt.serving(concurrency=args.concurrency)
        queue = asyncio.create_task(serving.run(grace_s=10)) if serving else None
        try:
            await _serve(server, args)
        finally:
            if serving is not None and queue is not None:
                serving.drain()
                with contextlib.suppress(Exception):
                    await queue
    print("agentrt serve stopped", file=sys.stderr)
    return EXIT_OK


def _server(uvicorn: Any, config: Any) -> Any:
    """uvicorn's server, but one that stops on SIGTERM or SIGINT without raising the
    signal again once it stopped (uvicorn does, which would kill the process before the
    runtime gives back its runs and closes)."""

    class Server(uvicorn.Server):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return Server(config)


async def _serve(server: Any, args: argparse.Namespace) -> None:
    """Listen, say where, and serve until a signal."""
    try:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    except OSError as exc:
        reason = exc.strerror or exc
        raise UsageError(
            f"--host {args.host} --port {args.port}: cannot listen ({reason})"
        ) from None
    with sock:
        port = sock.getsockname()[1]
        print(f"agentrt serving http://{args.host}:{port}/v1", file=sys.stderr, flush=True)
        await server.serve(sockets=[sock])
