"""aiohttp against httpx as the model client: ``python bench/http_clients.py``.

Sends chat-completion POSTs (a 20-turn conversation as the body) to the
scripted test server (in a child process), ``--concurrency`` at a time, with
each client library, and prints requests per second. httpx is optional (it
comes with the ``bench-langgraph`` extra); without it only aiohttp is measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from bench.common import INSTRUCTIONS, MODEL_NAME, TOOL_DEFS, query_text
from bench.server import TestServer

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def _body() -> bytes:
    """A request as agentrt sends it in the middle of a 20-tool-call run."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": query_text("long", 0)},
    ]
    for step in range(10):
        call = {
            "id": f"call_{step}_0",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": "5"})
    return orjson.dumps({"model": MODEL_NAME, "messages": messages, "tools": TOOL_DEFS})


async def _load(post: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            await post()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return time.perf_counter() - started


async def _aiohttp(url: str, body: bytes, requests: int, concurrency: int, reps: int) -> float:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            async with session.post(url, data=body, headers=_HEADERS) as resp:
                orjson.loads(await resp.read())

        await _load(post, concurrency, concurrency)
        return statistics.median([await _load(post, requests, concurrency) for _ in range(reps)])


async def _httpx(url: str, body: bytes, requests: int, concurrency: int, reps: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def post() -> None:
            resp = await client.post(url, content=body, headers=_HEADERS)
            orjson.loads(resp.content)

        await _load(post, concurrency, concurrency)
        return statistics.median([await _load(post, requests, concurrency) for _ in range(reps)])


def main(argv: list[str] | None = None) -> int:
    """Measure both clients at zero and at 50 ms model latency and print requests/s."""
    parser = argparse.ArgumentParser(prog="python bench/http_clients.py", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    clients = {"aiohttp": _aiohttp}
    if importlib.util.find_spec("httpx") is not None:
        clients["httpx"] = _httpx
    else:
        print("httpx not installed: measuring aiohttp only")
    body = _body()
    print(
        f"{args.requests} POSTs of {len(body)} bytes, {args.concurrency} in flight, "
        f"median of {args.reps}"
    )
    print(f"{'client':<8}  {'latency':>7}  {'wall s':>7}  {'req/s':>7}")
    with TestServer("process") as server:
        url = f"{server.url}/chat/completions"
        for latency in (0.0, 0.05):
            server.set_latency(latency)
            for name, measure in clients.items():
                server.reset()
                wall = asyncio.run(measure(url, body, args.requests, args.concurrency, args.reps))
                rate = args.requests / wall
                print(f"{name:<8}  {latency * 1000:5.0f}ms  {wall:7.3f}  {rate:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
