"""Build the client for a ``Model`` resource."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from agentrt._proxy import proxy_for
from agentrt.errors import UsageError
from agentrt.models.base import ModelClient
from agentrt.models.openai import OpenAIClient
from agentrt.models.replicated import ReplicaClients
from agentrt.models.scripted import ScriptedClient
from agentrt.spec.resources import ModelSpec

__all__ = ["create_client"]


def create_client(
    spec: ModelSpec,
    *,
    name: str,
    session: aiohttp.ClientSession | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelClient:
    """Create the client for a model spec.

    Args:
        spec: The ``Model`` resource's spec.
        name: The resource's name; the provider's model id when
            ``spec.model`` is not set.
        session: HTTP session to share (not closed by the client); an
            ``openai`` client makes its own when omitted.
        environ: Where ``spec.api_key_env`` and the proxy variables
            (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) are looked up: the
            settings' environment (a Runtime passes its own); by default none
            is set.

    Returns:
        An :class:`OpenAIClient`, a :class:`ReplicaClients` (a Model with
        ``replicas``) or a :class:`ScriptedClient`.

    Raises:
        UsageError: ``spec.api_key_env`` names a variable that is unset or empty.
    """
    model = spec.model or name
    if spec.provider == "scripted":
        return ScriptedClient(spec.script, model=model)

    env: Mapping[str, str] = environ or {}
    api_key: str | None = None
    if spec.api_key_env:
        api_key = env.get(spec.api_key_env)
        if not api_key:
            raise UsageError(
                f"Model {name!r} reads its API key from the environment variable "
                f"{spec.api_key_env}, which is not set; export {spec.api_key_env}=<key> "
                "or remove `api_key_env` from the spec"
            )
    if not spec.base_url:  # the spec validator requires it; this keeps the type checker honest
        raise UsageError(f"Model {name!r}: provider 'openai' needs `base_url`")
    endpoints = list(dict.fromkeys(u.rstrip("/") for u in [spec.base_url, *spec.replicas]))
    clients = {url: _openai(spec, url, model, api_key, session, env) for url in endpoints}
    return clients[endpoints[0]] if len(clients) == 1 else ReplicaClients(clients)


def _openai(
    spec: ModelSpec,
    base_url: str,
    model: str,
    api_key: str | None,
    session: aiohttp.ClientSession | None,
    env: Mapping[str, str],
) -> OpenAIClient:
    return OpenAIClient(
        base_url=base_url,
        model=model,
        api_key=api_key,
        timeout_s=spec.timeout_s,
        # A Model with rate limits is retried by the step, one turn of its bucket per
        # attempt: retries of the client's own would take none.
        max_retries=0 if spec.rate_limits is not None else spec.max_retries,
        session=session,
        api=spec.api,
        api_version=spec.api_version,
        max_tokens_param=spec.max_tokens_param,
        proxy=proxy_for(base_url, env),
    )
