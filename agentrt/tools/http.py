"""The ``http`` tool kind: an HTTP endpoint called with the model's arguments.

The URL template's ``{name}`` placeholders are filled from the arguments
(percent-encoded, so a value cannot change the path); the other arguments go
in a JSON body (POST, PUT and PATCH with ``body: json``) or the query string.
Header values, and the URL, may hold secrets by reference: ``${env:NAME}`` or
``${file:/path}``, resolved at each call and never written anywhere: the
result, its trace and error messages show ``[redacted]`` wherever a resolved
secret would appear, even when the server echoes it back.

Redirects are not followed: the secret headers would go wherever a redirect
points. Only idempotent tools are retried (429, 5xx, connection errors and
timeouts), honouring ``Retry-After``; every attempt of a call carries the same
``Idempotency-Key`` header, the call's :attr:`ToolContext.idempotency_key`.
Requests go through the proxy that ``HTTP_PROXY``/``HTTPS_PROXY`` name, unless
``NO_PROXY`` lists the host.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from agentrt import _json
from agentrt._imports import import_callable
from agentrt._proxy import proxy_for
from agentrt._retry import RETRY_AFTER_CAP_S, RETRYABLE_STATUSES, equal_jitter, parse_retry_after
from agentrt._text import count, plural
from agentrt.errors import ToolError, UsageError
from agentrt.models.base import ToolDef
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext, ToolResult

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "REDACTED",
    "CallSecrets",
    "HttpToolSet",
    "SecretResolver",
    "check_refs",
]

DEFAULT_TIMEOUT_S: Final = 30.0
"""Limit of one HTTP attempt when the Tool sets no ``timeout_s``."""

REDACTED: Final = "[redacted]"
"""What replaces a secret's value in results, traces and messages."""

_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")
# A URL template holds secret references and argument placeholders.
_URL_TOKEN = re.compile(r"\$\{(env|file):([^}]+)\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class SecretResolver:
    """Reads the values of ``${env:NAME}`` and ``${file:/path}`` references.

    Args:
        environ: Where ``env`` references are looked up (a Runtime passes its
            settings' environment); by default none is set. A ``file``
            reference is read at each call, so a secret rotated on disk is
            used without a restart.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ: Mapping[str, str] = environ or {}

    def resolve(self, kind: str, name: str) -> str:
        """The value of reference ``${kind:name}``.

        A file's content loses one trailing newline (as editors and ``echo``
        add one).

        Raises:
            ToolError: The variable is not set or the file cannot be read. The
                message names the reference, never a value.
        """
        ref = f"${{{kind}:{name}}}"
        if kind == "env":
            value = self._environ.get(name)
            if value is None:
                raise ToolError(f"secret {ref} is not available: {name} is not set")
            return value
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise ToolError(f"secret {ref} cannot be read: {exc.strerror or 'I/O error'}") from None
        except ValueError:  # never the decoder's message: it quotes the bytes
            raise ToolError(f"secret {ref} cannot be read: not UTF-8 text") from None
        for newline in ("\r\n", "\n"):
            if text.endswith(newline):
                return text[: -len(newline)]
        return text


class CallSecrets:
    """The secrets one call resolved, to put them in the request and nowhere else."""

    def __init__(self, resolver: SecretResolver) -> None:
        self._resolver = resolver
        self._values: list[str] = []
        self.longest = 0  # bytes of the longest value, as it may appear in a response

    def resolve(self, kind: str, name: str) -> str:
        """The value of ``${kind:name}``, remembered so that :meth:`redact` hides it."""
        value = self._resolver.resolve(kind, name)
        if value:
            self._values.append(value)
            encoded = quote(value, safe="")
            if encoded != value:  # as it appears in a URL
                self._values.append(encoded)
            # Longest first: a secret containing another is redacted whole.
            self._values.sort(key=len, reverse=True)
            self.longest = max(self.longest, len(self._values[0].encode()))
        return value

    def header(self, name: str, template: str) -> str:
        """Header ``name``'s value: ``template`` with its secret references resolved."""
        value = _REF.sub(lambda m: self.resolve(m[1], m[2]), template)
        if "\n" in value or "\r" in value:
            # Refused here with a clear message: aiohttp would refuse it with one
            # that might some day quote part of the value.
            raise ToolError(f"header {name!r}: a secret it references spans several lines")
        return value

    def redact(self, text: str) -> str:
        """``text`` with every secret this call resolved replaced by ``[redacted]``."""
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text


def _text(value: Any) -> str:
    """An argument as it goes into a URL."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _json.dumps_str(value)


def check_refs(name: str, where: str, value: str) -> None:
    """Refuse (``UsageError``) a ``${...}`` in ``value`` that is no secret reference."""
    for ref in _ANY_REF.findall(value):
        if not _REF.fullmatch(ref):
            raise UsageError(
                f"Tool {name}: {where} has {ref!r}; secret references are "
                "${env:NAME} or ${file:/absolute/path}"
            )


class HttpToolSet:
    """A Tool of kind ``http``: one tool, named after the resource.

    Its arguments' schema is the spec's ``input_schema``; without one it is
    derived from the URL template, every ``{placeholder}`` a required string
    (other arguments the model sends still go in the body or query string).

    Args:
        name: The Tool resource's name.
        spec: Its spec (kind ``http``).
        secrets: Resolves secret references; by default from ``environ`` and
            the file system.
        max_attempts: Attempts of an idempotent call (others get one).
        backoff_s: Backoff before the first retry, doubled after each, when
            the server sends no ``Retry-After``.
        sleep: Waits between attempts (tests observe the delays through it).
        environ: The settings' environment: where the proxy variables
            (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and, unless
            ``secrets`` is given, ``${env:NAME}`` secrets are looked up; by
            default none is set.
    """

    dynamic = False

    def __init__(
        self,
        name: str,
        spec: ToolSpec,
        *,
        secrets: SecretResolver | None = None,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if spec.http is None:
            raise UsageError(f"Tool {name}: kind 'http' needs an `http:` section")
        self.name = name
        self.spec = spec
        self._http = spec.http
        check_refs(name, "http.url", self._http.url)
        for header, value in self._http.headers.items():
            check_refs(name, f"header {header!r}", value)
        self._placeholders = list(
            dict.fromkeys(m[3] for m in _URL_TOKEN.finditer(self._http.url) if m[3])
        )
        schema = spec.input_schema or {
            "type": "object",
            "properties": {p: {"type": "string"} for p in self._placeholders},
            "required": list(self._placeholders),
        }
        description = spec.description or f"{self._http.method} {self._http.url}"
        self._definition = ToolDef(name, description, schema)
        self._resolver = secrets or SecretResolver(environ)
        self._attempts = max(1, max_attempts) if spec.idempotent else 1
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._environ: Mapping[str, str] = environ or {}
        self._timeout_s = spec.timeout_s or DEFAULT_TIMEOUT_S
        self._timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._lookup = (
            import_callable(spec.lookup, what=f"Tool {name} lookup") if spec.lookup else None
        )

    async def definitions(self) -> list[ToolDef]:
        """The one tool this endpoint is."""
        return [self._definition]

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Send the request, retrying transient failures when the tool is idempotent.

        Returns:
            The response text (capped at ``limits.output_bytes``); an error
            result for a status of 400 or more. The trace holds the method,
            the URL with secrets redacted, the status, the duration, the body
            size and the number of attempts.

        Raises:
            ToolError: A URL argument or a secret is missing, or the request
                failed (connection error, timeout) on its last attempt.
        """
        if tool != self.name:
            raise ToolError(f"Tool {self.name!r} offers no tool {tool!r}")
        secrets = CallSecrets(self._resolver)
        url, rest = self._fill_url(arguments, secrets)
        headers = {
            key: secrets.header(key, value)
            for key, value in self._http.headers.items()
            if key.lower() != "idempotency-key"  # the call's own key replaces any configured
        }
        headers["Idempotency-Key"] = ctx.idempotency_key
        data: bytes | None = None
        if self._http.method in _BODY_METHODS and self._http.body == "json":
            data = _json.dumps(rest)
            headers["Content-Type"] = "application/json"
        else:
            items = [
                (key, _text(item))
                for key, value in rest.items()
                for item in (value if isinstance(value, list) else [value])
                if item is not None
            ]
            if items:
                url += ("&" if "?" in url else "?") + urlencode(items, quote_via=quote)
        return await self._send(URL(url, encoded=True), headers, data, secrets)

    async def lookup(self, tool: str, ctx: ToolContext) -> ToolResult | None:
        """Ask the spec's ``lookup`` function whether the call with this key happened."""
        if self._lookup is None:
            return None
        # A blocking function runs in a thread so it cannot stall the event loop.
        found = await asyncio.to_thread(self._lookup, ctx=ctx)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            return None
        return ToolResult(found if isinstance(found, str) else _json.dumps_str(found))

    async def close(self) -> None:
        """Close the connection pool. Idempotent; a later call opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _fill_url(
        self, arguments: dict[str, Any], secrets: CallSecrets
    ) -> tuple[str, dict[str, Any]]:
        """The URL with placeholders and secrets filled, and the arguments left over."""
        missing = [p for p in self._placeholders if arguments.get(p) is None]
        if missing:
            raise ToolError(f"Tool {self.name!r} needs {_arguments(missing)} for its URL")

        def fill(m: re.Match[str]) -> str:
            value = _text(arguments[m[3]]) if m[3] else secrets.resolve(m[1], m[2])
            return quote(value, safe="")

        url = _URL_TOKEN.sub(fill, self._http.url)
        return url, {k: v for k, v in arguments.items() if k not in self._placeholders}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No await between the check and the assignment, so concurrent
            # first calls share one session.
            self._session = aiohttp.ClientSession()
        return self._session

    async def _send(
        self, url: URL, headers: dict[str, str], data: bytes | None, secrets: CallSecrets
    ) -> ToolResult:
        method = self._http.method
        shown = secrets.redact(str(url))
        started = time.perf_counter()
        session = self._get_session()
        proxy = proxy_for(str(url), self._environ)
        for attempt in range(1, self._attempts + 1):
            retry_after: float | None = None
            try:
                async with session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    proxy=proxy,
                ) as resp:
                    if resp.status not in RETRYABLE_STATUSES or attempt == self._attempts:
                        text, size, truncated = await self._body(resp, secrets)
                        trace: dict[str, Any] = {
                            "method": method,
                            "url": shown,
                            "status": resp.status,
                            "duration_s": round(time.perf_counter() - started, 3),
                            "response_bytes": size,
                            "attempts": attempt,
                        }
                        if truncated:
                            trace["truncated"] = True
                        return _result(resp, text, trace, secrets)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    problem = f"timed out after {self._timeout_s:g}s"
                else:
                    problem = secrets.redact(f"{type(exc).__name__}: {exc}")
                if attempt == self._attempts:
                    tries = f" (gave up after {count(attempt, 'attempt')})" if attempt > 1 else ""
                    # Not retryable: this call already retried what was safe to retry.
                    raise ToolError(f"{method} {shown} failed: {problem}{tries}") from None
            except Exception as exc:  # e.g. a header value aiohttp refuses: not transient
                problem = secrets.redact(f"{type(exc).__name__}: {exc}")
                raise ToolError(f"{method} {shown} failed: {problem}") from None
            if retry_after is not None:
                delay = min(retry_after, RETRY_AFTER_CAP_S)
            else:
                delay = equal_jitter(self._backoff_s * 2.0 ** (attempt - 1))
            await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _body(
        self, resp: aiohttp.ClientResponse, secrets: CallSecrets
    ) -> tuple[str, int, bool]:
        """The body as text, redacted and capped; its size; whether it was cut."""
        limit = self.spec.limits.output_bytes
        # A secret the server echoes across the cut must be read whole to be
        # redacted whole, hence the margin. Reading stops there: the rest is
        # never shown, and may be endless.
        want = limit + secrets.longest
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > want:
                break
        more = size > want
        if more and resp.content_length:
            size = resp.content_length
        body = b"".join(chunks)[:want]
        try:
            text = body.decode(resp.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", errors="replace")
        text = secrets.redact(text)
        encoded = text.encode()
        if not more and len(encoded) <= limit:
            return text, size, False
        text = encoded[:limit].decode("utf-8", errors="replace")
        marker = f"[truncated: the response is longer than {count(limit, 'byte')}]"
        return f"{text}\n{marker}", size, True


def _result(
    resp: aiohttp.ClientResponse, text: str, trace: dict[str, Any], secrets: CallSecrets
) -> ToolResult:
    """The result the model sees for a response; ``text`` is already redacted."""
    status = resp.status
    if status >= 400:
        return ToolResult(f"HTTP {status} {resp.reason or ''}".rstrip() + f": {text}", True, trace)
    if 300 <= status < 400:
        # The redirect was not followed; the model can see where it pointed.
        location = secrets.redact(resp.headers.get("Location", ""))
        return ToolResult(
            f"HTTP {status} redirect to {location} (not followed)\n{text}", trace=trace
        )
    return ToolResult(text, trace=trace)


def _arguments(names: list[str]) -> str:
    """The missing URL arguments, as "argument a" or "arguments a, b"."""
    return f"{'argument' if len(names) == 1 else plural('argument')} {', '.join(names)}"
