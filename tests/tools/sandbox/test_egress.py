"""Network allow-lists: the egress proxy on its own, inside a real sandbox, and through a tool.

Destinations are real listeners on the host's loopback; the sandbox reaches
them only through the proxy the runtime serves inside its network namespace.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agentrt.errors import SpecError
from agentrt.spec.loader import load_text
from agentrt.spec.network import parse_rule
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext
from agentrt.tools.code import CodeTool
from agentrt.tools.sandbox.base import ExecResult, SandboxLimits, SandboxPolicy
from agentrt.tools.sandbox.bubblewrap import BubblewrapBackend
from agentrt.tools.sandbox.egress import EgressProxy
from tests.tools.sandbox import not_tested


@pytest.fixture
async def origin() -> AsyncIterator[int]:
    """A real HTTP server on the host's loopback; yields its port."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello from the host")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    await runner.cleanup()


async def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening on it (bound, then released)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def host_proxy(*allow: str) -> EgressProxy:
    """A proxy serving on the host's loopback (no namespace needed to test it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    egress = EgressProxy(allow)
    await egress.serve(sock)
    return egress


@pytest.fixture
async def proxy(origin: int) -> AsyncIterator[EgressProxy]:
    """A proxy allowing only the origin."""
    egress = await host_proxy(f"127.0.0.1:{origin}")
    yield egress
    await egress.close()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


# --- the rules -------------------------------------------------------------


def test_rules_match_names_and_ports_exactly() -> None:
    rule = parse_rule("API.example.com:443")
    assert rule.matches("api.example.com", 443)
    assert rule.matches("API.EXAMPLE.COM.", 443)
    assert not rule.matches("api.example.com", 80)
    assert not rule.matches("evil-api.example.com", 443)
    wildcard = parse_rule("*.example.com:443")
    assert wildcard.matches("a.b.example.com", 443)
    assert not wildcard.matches("example.com", 443)
    assert not wildcard.matches("badexample.com", 443)
    assert parse_rule("[::1]:8080").matches("[::1]", 8080)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("example.com", "has no port"),
        ("example.com:http", "port must be a number"),
        ("example.com:70000", "port must be a number"),
        ("exa mple.com:80", "not a host name"),
        ("::1:80", "not a host name"),
        ("[nope]:80", "not an IPv6 address"),
    ],
)
def test_a_bad_entry_is_a_spec_error_with_the_fix(entry: str, says: str) -> None:
    text = textwrap.dedent(
        f"""\
        apiVersion: agentrt.dev/v1
        kind: Tool
        metadata: {{name: fetch}}
        spec:
          kind: code
          code: {{}}
          permissions:
            network: ["{entry}"]
        """
    )
    with pytest.raises(SpecError) as info:
        load_text(text, "tools.yaml")
    message = str(info.value)
    assert "tools.yaml:8" in message
    assert "permissions.network" in message
    assert says in message
    assert '"host:port"' in message  # the fix


# --- the proxy on its own ---------------------------------------------------


async def test_proxy_forwards_an_allowed_absolute_request(proxy: EgressProxy, origin: int) -> None:
    request = f"GET http://127.0.0.1:{origin}/hello HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    reply = await exchange(proxy.port, request)
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b"hello from the host")
    (attempt,) = proxy.attempts
    assert (attempt.host, attempt.port, attempt.allowed) == ("127.0.0.1", origin, True)
    assert attempt.sent > 0 and attempt.received > len(b"hello from the host")


async def test_proxy_tunnels_an_allowed_connect(proxy: EgressProxy, origin: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"CONNECT 127.0.0.1:{origin} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).endswith(b"hello from the host")
    writer.close()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        ("CONNECT 127.0.0.1:{other} HTTP/1.1", b"403"),
        ("GET http://localhost:{origin}/hello HTTP/1.1", b"403"),  # a name is not its address
        ("GET /hello HTTP/1.1", b"400"),  # not a proxy request
        ("GET https://127.0.0.1:{origin}/ HTTP/1.1", b"400"),  # TLS goes through CONNECT
        ("HELLO", b"400"),
    ],
)
async def test_proxy_refuses_with_a_reason(
    proxy: EgressProxy, origin: int, request_line: str, status: bytes
) -> None:
    other = await closed_port()
    line = request_line.format(origin=origin, other=other)
    reply = await exchange(proxy.port, f"{line}\r\nHost: x\r\n\r\n".encode())
    assert reply.split(b" ")[1] == status
    assert b"agentrt egress proxy:" in reply
    if status == b"403":
        assert b"not in this tool's network allow-list" in reply
        assert proxy.attempts[-1].allowed is False


async def test_proxy_says_when_an_allowed_host_is_down(origin: int) -> None:
    down = await closed_port()
    egress = await host_proxy(f"127.0.0.1:{down}")
    try:
        reply = await exchange(egress.port, f"CONNECT 127.0.0.1:{down} HTTP/1.1\r\n\r\n".encode())
    finally:
        await egress.close()
    assert reply.startswith(b"HTTP/1.1 502")
    assert "connect failed" in str(egress.attempts[0].error)


# --- inside a real sandbox -------------------------------------------------


@pytest.fixture
async def bubblewrap(tmp_path: Path) -> BubblewrapBackend:
    backend = BubblewrapBackend(workdir=tmp_path / "workdir")
    probe = await backend.probe()
    if not probe.ok:
        not_tested(f"BUBBLEWRAP IS NOT AVAILABLE, ALLOW-LISTS NOT TESTED: {probe.detail}")
    return backend


SANDBOXED = """
import http.client, os, socket, urllib.error, urllib.request
print("proxy", os.environ["HTTPS_PROXY"].startswith("http://127.0.0.1:"))
print("allowed", urllib.request.urlopen("http://127.0.0.1:{origin}/hello").read().decode())
try:
    urllib.request.urlopen("http://127.0.0.1:{other}/hello")
except urllib.error.HTTPError as exc:
    print("refused", exc.code, exc.read().decode().strip())
tunnel = http.client.HTTPConnection("127.0.0.1", int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1]))
tunnel.set_tunnel("127.0.0.1", {origin})
tunnel.request("GET", "/hello")
print("tunnel", tunnel.getresponse().read().decode())
try:
    socket.create_connection(("127.0.0.1", {origin}), timeout=3)
    print("direct CONNECTED")
except OSError as exc:
    print("direct blocked", type(exc).__name__)
"""


async def run_sandboxed(
    backend: BubblewrapBackend, scratch: Path, allow: str, code: str
) -> ExecResult:
    scratch.mkdir(exist_ok=True)
    sandbox = await backend.create(
        SandboxPolicy(scratch, network=(allow,)), SandboxLimits(wall_s=20)
    )
    try:
        return await sandbox.exec(["python3", "-I", "-c", code])
    finally:
        await sandbox.terminate()


async def test_a_sandbox_reaches_only_its_allow_list(
    bubblewrap: BubblewrapBackend, origin: int, tmp_path: Path
) -> None:
    other = await closed_port()
    code = SANDBOXED.format(origin=origin, other=other)
    result = await run_sandboxed(bubblewrap, tmp_path / "scratch", f"127.0.0.1:{origin}", code)
    assert result.reason == "ok", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "proxy True"
    assert lines[1] == "allowed hello from the host"
    assert lines[2].startswith(f"refused 403 agentrt egress proxy: 127.0.0.1:{other} is not in")
    assert lines[3] == "tunnel hello from the host"
    assert lines[4].startswith("direct blocked"), lines[4]  # no route around the proxy
    seen = [(a["port"], a["allowed"], a["method"]) for a in result.egress]
    assert seen == [(origin, True, "GET"), (other, False, "GET"), (origin, True, "CONNECT")]


PRINT_PROXY_VARS = "import os; print([k for k in os.environ if 'proxy' in k.lower()])"


async def test_without_an_allow_list_there_is_no_proxy(
    bubblewrap: BubblewrapBackend, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sandbox = await bubblewrap.create(SandboxPolicy(scratch), SandboxLimits(wall_s=20))
    try:
        result = await sandbox.exec(["python3", "-I", "-c", PRINT_PROXY_VARS])
    finally:
        await sandbox.terminate()
    assert result.reason == "ok", result.stderr
    assert result.stdout.strip() == "[]"
    assert result.egress == ()


async def test_a_code_tool_with_an_allow_list_runs_where_it_is_enforced(
    bubblewrap: BubblewrapBackend, origin: int, tmp_path: Path
) -> None:
    spec = ToolSpec.model_validate(
        {"kind": "code", "permissions": {"network": [f"127.0.0.1:{origin}"]}}
    )
    tool = CodeTool("run_code", spec, workdir=tmp_path / "tool", pool_size=1)
    code = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{origin}/hello').read().decode())"
    )
    try:
        result = await tool.call(
            "run_code", {"code": code}, ToolContext("run-1", 1, "c1", "default", None)
        )
    finally:
        await tool.close()
    assert (result.output, result.is_error) == ("hello from the host", False)
    # auto picks the strongest backend that enforces an allow-list (gVisor cannot).
    assert result.trace["backend"] == "bubblewrap"
    assert result.trace["network"][0] | {"sent": 0, "received": 0} == {
        "host": "127.0.0.1",
        "port": origin,
        "allowed": True,
        "method": "GET",
        "sent": 0,
        "received": 0,
    }
