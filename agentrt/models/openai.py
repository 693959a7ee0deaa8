"""A client for OpenAI-compatible Chat Completions endpoints, on aiohttp.

Works with OpenAI itself and with servers that speak the same protocol (vLLM,
Ollama, LiteLLM, llama.cpp, the bundled :mod:`agentrt.models.testserver`).
This is the hot path of every run, so a request does little besides one
orjson encode, one POST and one orjson decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from agentrt._json import dumps, dumps_str, loads
from agentrt._retry import RETRY_AFTER_CAP_S, RETRYABLE_STATUSES, equal_jitter, parse_retry_after
from agentrt._text import count
from agentrt.errors import ModelError
from agentrt.models._chunks import ChunkReader, cached_tokens, sse_data
from agentrt.models.base import ModelDelta, ModelRequest, ModelResponse, ToolCall

__all__ = ["OpenAIClient", "chat_url"]

_ERROR_TEXT_LIMIT = 500

# Indirection so tests can observe the delays without waiting them out.
_sleep = asyncio.sleep


class OpenAIClient:
    """An OpenAI-compatible Chat Completions client with retries.

    Transient failures (HTTP 408, 429, 500, 502, 503, 504, connection errors
    and timeouts) are retried up to ``max_retries`` times with exponential
    backoff and jitter, or after the server's ``Retry-After`` when it sends
    one (capped at 60 s). The client is bound to one model id: ``model`` is
    sent with every request and ``ModelRequest.model`` is not consulted.

    Args:
        base_url: Endpoint root, e.g. ``https://api.openai.com/v1``;
            ``/chat/completions`` is appended. With ``api="azure"``, the
            resource's endpoint (``https://NAME.openai.azure.com``).
        model: The provider's model id (with ``api="azure"``, the deployment).
        api_key: Sent as a Bearer token when given (``api-key`` header with
            ``api="azure"``).
        timeout_s: Limit for one HTTP attempt, connection included.
        max_retries: Retries after the first attempt (0 disables retrying).
        session: A session to use; it is not closed by :meth:`close`. When
            omitted the client creates one on first use and owns it.
        backoff_initial_s: Backoff before the first retry (before jitter).
        backoff_max_s: Upper bound of the backoff.
        api: ``"openai"``, or ``"azure"`` for Azure OpenAI's deployment API:
            ``{base_url}/openai/deployments/{model}/chat/completions``.
        api_version: The ``api-version`` query parameter (``api="azure"``).
        max_tokens_param: The request field that carries
            ``ModelRequest.max_output_tokens``.
        proxy: HTTP proxy URL every request goes through (see
            ``agentrt._proxy.proxy_for``); ``None`` connects directly.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 3,
        session: aiohttp.ClientSession | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 8.0,
        api: Literal["openai", "azure"] = "openai",
        api_version: str | None = None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        proxy: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max(0, max_retries)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._url = chat_url(self.base_url, model, api=api, api_version=api_version)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers.update(_auth(api, api_key))
        self._max_tokens_param = max_tokens_param
        self._proxy = proxy
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one chat completion, retrying transient failures.

        Args:
            request: Messages, tools and sampling settings. ``temperature`` and
                ``max_output_tokens`` are sent only when set.

        Returns:
            The parsed reply with token usage.

        Raises:
            ModelError: ``retryable=True`` (with ``status`` and ``retry_after``
                of the last attempt) when transient failures outlast the
                retries; ``retryable=False`` for other error statuses and for
                a response that is not a valid completion.
        """
        return await self._post(dumps(self._body(request)), _read_completion)

    async def stream(
        self, request: ModelRequest, on_delta: Callable[[ModelDelta], None]
    ) -> ModelResponse:
        """Run one chat completion streamed (``stream: true``, usage included), calling
        ``on_delta`` with each piece of the reply as it arrives.

        Retries as :meth:`complete` does, a stream cut off midway too; the pieces
        of the next attempt carry its number (:attr:`ModelDelta.attempt`). A
        server that answers with a whole completion instead is read as one.

        Returns:
            The whole reply, as :meth:`complete` would return it.

        Raises:
            ModelError: as :meth:`complete`.
        """
        body = self._body(request)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}

        async def read(resp: aiohttp.ClientResponse, attempt: int) -> ModelResponse:
            if resp.content_type == "application/json":  # the server does not stream
                return await _read_completion(resp, attempt)
            reader = ChunkReader(attempt)
            async for data in sse_data(resp.content.iter_any()):
                delta = reader.add(data)
                if delta is not None:
                    on_delta(delta)
                if reader.done:
                    break
            if not reader.done:  # the connection closed midway: another attempt may finish
                raise _StreamCut("the stream ended before data: [DONE]")
            return reader.response(request.messages)

        return await self._post(dumps(body), read, accept="text/event-stream")

    def _body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages}
        if request.tools:
            body["tools"] = [tool.to_openai() for tool in request.tools]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            body[self._max_tokens_param] = request.max_output_tokens
        return body

    async def _post(
        self,
        data: bytes,
        read: Callable[[aiohttp.ClientResponse, int], Awaitable[ModelResponse]],
        *,
        accept: str | None = None,
    ) -> ModelResponse:
        """POST ``data`` until an attempt answers 2xx (``read`` makes its reply) or the
        retries run out."""
        session = self._get_session()
        headers = self._headers if accept is None else {**self._headers, "Accept": accept}
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            timed_out = False
            try:
                async with session.post(
                    self._url,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    proxy=self._proxy,
                ) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        return await read(resp, attempt + 1)
                    raw = await resp.read()
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except aiohttp.InvalidURL as exc:
                raise ModelError(f"invalid model endpoint URL {self._url!r}: {exc}") from exc
            except (aiohttp.ClientError, TimeoutError, _StreamCut) as exc:
                problem = f"request to {self._url} failed: {_describe(exc)}"
                timed_out = isinstance(exc, TimeoutError)
            else:
                problem = f"model endpoint returned HTTP {status}: {_error_detail(raw)}"
                if status not in RETRYABLE_STATUSES:
                    raise ModelError(problem, status=status)

            if attempt >= self.max_retries:
                if attempt:
                    problem = f"{problem} (gave up after {count(attempt + 1, 'attempt')})"
                raise ModelError(
                    problem,
                    retryable=True,
                    status=status,
                    retry_after=retry_after,
                    timed_out=timed_out,
                )
            if retry_after is not None:
                delay = min(retry_after, RETRY_AFTER_CAP_S)
            else:
                delay = self._backoff(attempt)
            await _sleep(delay)
            attempt += 1

    async def close(self) -> None:
        """Close the session if this client created it. Idempotent.

        A client whose own session was closed opens a new one if used again.
        """
        if not self._owns_session:
            return
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No await between the check and the assignment, so concurrent
            # first calls cannot create two sessions.
            connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _backoff(self, attempt: int) -> float:
        return equal_jitter(min(self.backoff_max_s, self.backoff_initial_s * 2.0**attempt))


def chat_url(
    base_url: str, model: str, *, api: str = "openai", api_version: str | None = None
) -> str:
    """The Chat Completions URL of an endpoint.

    Args:
        base_url: The endpoint root, without a trailing slash.
        model: The model id; for Azure, the deployment (it is part of the path).
        api: ``"openai"`` or ``"azure"``.
        api_version: Azure's ``api-version`` query parameter.
    """
    if api != "azure":
        return f"{base_url}/chat/completions"
    url = f"{base_url}/openai/deployments/{quote(model, safe='')}/chat/completions"
    return f"{url}?api-version={quote(api_version or '', safe='')}"


def _auth(api: str, api_key: str) -> dict[str, str]:
    """The header that carries the key: Azure OpenAI's ``api-key``, else a Bearer token."""
    return {"api-key": api_key} if api == "azure" else {"Authorization": f"Bearer {api_key}"}


class _StreamCut(Exception):
    """A streamed answer that ended before its end: a transient failure, retried."""


async def _read_completion(resp: aiohttp.ClientResponse, attempt: int) -> ModelResponse:
    return _parse_completion(await resp.read(), resp.status)


def _parse_completion(raw: bytes, status: int) -> ModelResponse:
    try:
        data = loads(raw)
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        calls = [
            ToolCall(
                id=str(call["id"]),
                name=str(call["function"]["name"]),
                arguments=_arguments(call["function"].get("arguments")),
            )
            for call in message.get("tool_calls") or ()
        ]
        usage = data.get("usage") or {}
        return ModelResponse(
            content=content if content is None or isinstance(content, str) else str(content),
            tool_calls=calls,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            model=data.get("model"),
            cached_tokens=cached_tokens(usage),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        snippet = raw[:_ERROR_TEXT_LIMIT].decode("utf-8", "replace")
        raise ModelError(
            f"model endpoint returned a malformed completion ({type(exc).__name__}: {exc}): "
            f"{snippet!r}",
            status=status,
        ) from exc


def _arguments(value: Any) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    # Some servers return the arguments as an object rather than JSON text.
    return dumps_str(value)


def _error_detail(raw: bytes) -> str:
    """The server's error message: ``error.message`` of the JSON body, else its text."""
    try:
        data = loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_ERROR_TEXT_LIMIT]
        if isinstance(error, str) and error:
            return error[:_ERROR_TEXT_LIMIT]
        if data.get("message"):
            return str(data["message"])[:_ERROR_TEXT_LIMIT]
    text = raw[:_ERROR_TEXT_LIMIT].decode("utf-8", "replace").strip()
    return text or "(empty body)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, _StreamCut):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
