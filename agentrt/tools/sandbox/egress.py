"""Egress through an allow-list: the proxy a sandbox with ``network: [host:port]`` uses.

A sandbox's network namespace is empty but for its loopback, so nothing in it
can reach the outside by itself. For a Tool with an allow-list the runtime
opens a listening socket *inside* that namespace (a thread enters it with
``setns`` just long enough to bind ``127.0.0.1:<port>``; the socket stays in
the namespace), serves an HTTP proxy on it from the runtime's own event loop,
and sets ``HTTP_PROXY``/``HTTPS_PROXY`` for the command. No process of the
sandbox is needed for this, and no process of the sandbox can get around it:
a direct connection finds no route.

The proxy understands ``CONNECT host:port`` (HTTPS and any TCP protocol; the
tunnel is opaque) and absolute-form requests (``GET http://host:port/path``).
Each destination is checked against the rules *by the name the client asked
for*, before any DNS lookup, and the connection is made from the runtime's
host. A refused destination gets ``403`` with a sentence the model can act
on. Every attempt is recorded (host, port, allowed, bytes) for the tool trace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentrt.spec.network import NetworkRule, allows, parse_rule

__all__ = ["EgressAttempt", "EgressProxy", "listen_in_netns", "proxy_env"]

log = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_HEAD_MAX = 16 * 1024
_HEAD_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 10.0
_MAX_ATTEMPTS = 100  # recorded per sandbox; beyond this they are counted, not listed
_CHUNK = 65536


@dataclass(slots=True)
class EgressAttempt:
    """One connection a sandboxed command asked the proxy for."""

    host: str
    port: int
    allowed: bool
    method: str
    error: str = ""
    sent: int = 0
    received: int = 0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form for the tool trace."""
        data: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "allowed": self.allowed,
            "method": self.method,
            "sent": self.sent,
            "received": self.received,
        }
        if self.error:
            data["error"] = self.error
        return data


def proxy_env(port: int) -> dict[str, str]:
    """The environment that points common HTTP clients at the proxy on ``port``."""
    url = f"http://127.0.0.1:{port}"
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url}


def _bind_in_netns(pid: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter the sandbox's network namespace: {os.strerror(err)}")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            sock.setblocking(False)
        finally:
            # If going back failed this thread is stuck in the sandbox's namespace;
            # it is a thread of its own and ends now, so nothing else runs there.
            libc.setns(own, _CLONE_NEWNET)
        return sock
    finally:
        os.close(own)
        os.close(target)


async def listen_in_netns(pid: int) -> socket.socket:
    """A listening socket on ``127.0.0.1`` inside the network namespace of ``pid``.

    Raises:
        OSError: the namespace could not be entered (needs CAP_SYS_ADMIN over it).
    """
    done: concurrent.futures.Future[socket.socket] = concurrent.futures.Future()

    def work() -> None:
        try:
            done.set_result(_bind_in_netns(pid))
        except BaseException as exc:
            done.set_exception(exc)

    # A thread of its own, never a pooled one: setns changes the calling thread.
    threading.Thread(target=work, name=f"agentrt-netns-{pid}", daemon=True).start()
    return await asyncio.wrap_future(done)


class EgressProxy:
    """An HTTP proxy that lets through only the destinations its rules allow.

    Args:
        rules: allow-list entries (``host:port``; see :mod:`agentrt.spec.network`).
    """

    def __init__(self, rules: tuple[str, ...] | tuple[NetworkRule, ...]) -> None:
        self.rules = tuple(r if isinstance(r, NetworkRule) else parse_rule(r) for r in rules)
        self.attempts: list[EgressAttempt] = []
        self.dropped = 0  # attempts beyond _MAX_ATTEMPTS
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port the proxy listens on (inside its network namespace)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def serve(self, sock: socket.socket) -> None:
        """Start serving on a listening socket (from :func:`listen_in_netns`)."""
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def close(self) -> None:
        """Stop listening and cut every open tunnel."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _record(self, attempt: EgressAttempt) -> EgressAttempt:
        if len(self.attempts) < _MAX_ATTEMPTS:
            self.attempts.append(attempt)
        else:
            self.dropped += 1
        return attempt

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # one bad client must not stop the proxy
            log.exception("egress proxy: connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _reply(writer, 431, "request head too large")
            return
        if len(head) > _HEAD_MAX:
            await _reply(writer, 431, "request head too large")
            return
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _reply(writer, 400, "not an HTTP proxy request")
            return
        method, target, version = parts
        parsed = _destination(method, target)
        if parsed is None:
            await _reply(
                writer,
                400,
                "send requests through this proxy as CONNECT host:port or with an absolute "
                "http:// URL (set HTTP_PROXY/HTTPS_PROXY, which the sandbox already has)",
            )
            return
        host, port, path = parsed
        attempt = self._record(EgressAttempt(host, port, allows(self.rules, host, port), method))
        if not attempt.allowed:
            attempt.error = "not in the allow-list"
            allowed = ", ".join(str(r) for r in self.rules)
            await _reply(
                writer,
                403,
                f"{host}:{port} is not in this tool's network allow-list ({allowed}); "
                "ask the operator to add it to the Tool's permissions.network",
            )
            return
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            attempt.error = f"connect failed: {exc or type(exc).__name__}"
            await _reply(writer, 502, f"cannot connect to {host}:{port}: {attempt.error}")
            return
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                request = _origin_head(method, path, version, rest)
                up_writer.write(request)
                attempt.sent += len(request)
            await self._relay(reader, writer, up_reader, up_writer, attempt)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        attempt: EgressAttempt,
    ) -> None:
        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, out: bool) -> None:
            try:
                while chunk := await src.read(_CHUNK):
                    dst.write(chunk)
                    await dst.drain()
                    if out:
                        attempt.sent += len(chunk)
                    else:
                        attempt.received += len(chunk)
            finally:
                if dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()

        await asyncio.gather(
            pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True
        )


def _destination(method: str, target: str) -> tuple[str, int, str] | None:
    """(host, port, path) a request asks for, or None if it is not a proxy request."""
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit():
            return None
        return host.strip("[]").lower(), int(port), ""
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        return None
    try:
        number = url.port or 80
    except ValueError:
        return None
    path = url.path or "/"
    return url.hostname.lower(), number, path + (f"?{url.query}" if url.query else "")


def _origin_head(method: str, path: str, version: str, rest: bytes) -> bytes:
    """The request head as the origin server expects it: origin-form, no proxy headers."""
    headers = [
        h
        for h in rest.split(b"\r\n")
        if h and not h.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))
    ]
    lines = [f"{method} {path} {version}".encode("latin-1"), *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 431: "Too Large", 502: "Bad Gateway"}
    body = f"agentrt egress proxy: {text}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
