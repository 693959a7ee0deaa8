"""The health and readiness checks of a worker, over HTTP, for process supervisors
and Kubernetes probes.

``GET /healthz`` answers 200 while the worker's event loop answers at all (the
liveness probe: restart it otherwise). ``GET /readyz`` answers 200 while it
takes work (serving, and its store answered the last claim) and 503 while it
starts, drains, or cannot reach its store. Both bodies are a JSON object of the
worker's state.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict

from aiohttp import web

from agentrt.engine import ServingState

__all__ = ["health_server"]


def _app(state: Callable[[], ServingState]) -> web.Application:
    def body(now: ServingState) -> dict[str, object]:
        return {**asdict(now), "ready": now.ready}

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **body(state())})

    async def readyz(_: web.Request) -> web.Response:
        now = state()
        answer = {"status": "ready" if now.ready else "not ready", **body(now)}
        return web.json_response(answer, status=200 if now.ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@contextlib.asynccontextmanager
async def health_server(
    state: Callable[[], ServingState], *, port: int, host: str = "0.0.0.0"
) -> AsyncIterator[int]:
    """Serve the checks on ``host:port`` while the context is open; yields the port
    (the one the system chose when ``port`` is 0)."""
    runner = web.AppRunner(_app(state), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        addresses = runner.addresses
        yield int(addresses[0][1]) if addresses else port
    finally:
        await runner.cleanup()
