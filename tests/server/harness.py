"""A real ``agentrt serve`` process for the API tests, and a client for one API key.

The server runs as a child process over its own SQLite store, reaching a
scripted model server over HTTP; tests speak to it over HTTP on 127.0.0.1 with
the keys they make in the store, each test in a tenant of its own.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from agentrt import _json
from agentrt.models.testserver import ModelTestServer
from agentrt.server.keys import create_key
from agentrt.state import Store

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "agentrt.cli.main"]


@dataclass
class Served:
    """One ``agentrt serve`` process and where to reach it."""

    base: str  # http://127.0.0.1:PORT
    store_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    model: ModelTestServer

    def said(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (SIGKILL past ``timeout``); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    async def key(self, tenant: str, role: str = "admin", name: str | None = None) -> str:
        """A new key of ``tenant`` with ``role``, made in the server's store."""
        async with Store.from_url(self.store_url) as store:
            _, text = await create_key(store, tenant=tenant, role=role, name=name, now=time.time())
        return text


def start_serve(
    store_url: str,
    tmp: Path,
    model: ModelTestServer,
    *extra: str,
    env: dict[str, str] | None = None,
) -> Served:
    """Start ``agentrt serve --port 0`` (with ``env`` added to the environment) and wait
    until it listens."""
    log = tmp / f"serve-{secrets.token_hex(3)}.log"
    env = {**os.environ, **(env or {}), "AGENTRT_STORE": store_url, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*CMD, "serve", "--port", "0", "--allow-module", "tests", *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        text = log.read_text(errors="replace")
        if "agentrt serving http://" in text:
            url = text.split("agentrt serving ", 1)[1].split()[0]
            return Served(url.removesuffix("/v1"), store_url, proc, log, model)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"agentrt serve did not start:\n{text}")
        time.sleep(0.05)


@dataclass
class Reply:
    """An HTTP answer: status, headers and the body (parsed when JSON)."""

    status: int
    headers: CIMultiDict[str]
    body: Any
    text: str = field(repr=False, default="")


class Api:
    """Requests to a served API with one key (or none)."""

    def __init__(self, served: Served, key: str | None, http: aiohttp.ClientSession) -> None:
        self.served = served
        self.key = key
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request; the reply whatever its status."""
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        body: Any = io.BytesIO(data.encode() if isinstance(data, str) else data) if data else data
        if json is not None:
            body = _json.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, self.served.base + path, data=body, headers=sent
        ) as response:
            text = await response.text()
            try:
                parsed = _json.loads(text) if text else None
            except ValueError:
                parsed = text
            return Reply(response.status, CIMultiDict(response.headers), parsed, text)

    async def apply(self, yaml_text: str) -> Reply:
        """Apply YAML documents."""
        return await self.call(
            "POST", "/v1/resources", data=yaml_text, headers={"Content-Type": "application/yaml"}
        )


async def agentrt(
    *args: str,
    server: Served | None = None,
    key: str | None = None,
    store: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run the ``agentrt`` command (with ``env`` added): against ``server`` with ``key``,
    or over ``store``; its exit code, standard output and standard error."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("AGENTRT_")}
    full.update(PYTHONPATH=str(ROOT), NO_COLOR="1", **(env or {}))
    if server is not None:
        full.update(AGENTRT_SERVER=server.base, AGENTRT_API_KEY=key or "")
    if store is not None:
        full["AGENTRT_STORE"] = store
    proc = await asyncio.create_subprocess_exec(
        *CMD, *args, env=full, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def shape(text: str) -> str:
    """Output without what differs between two runs: their ids and how long steps took."""
    text = re.sub(r"\brun_[0-9a-f]+", "RUN", text)
    return re.sub(r"\d+ms", "Nms", text)
