"""create_client: provider selection, model id, API key lookup and endpoint options."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentrt import Runtime
from agentrt.errors import UsageError
from agentrt.models import (
    ModelRequest,
    ModelTestServer,
    OpenAIClient,
    ScriptedClient,
    create_client,
)
from agentrt.spec.resources import ModelSpec
from agentrt.tools.sandbox.egress import EgressProxy
from tests.conftest import resources, rules
from tests.tools.sandbox.test_egress import host_proxy


async def test_scripted_spec_gives_a_scripted_client() -> None:
    spec = ModelSpec.model_validate(
        {"provider": "scripted", "script": [{"steps": [{"content": "hi"}]}]}
    )
    client = create_client(spec, name="toy")
    assert isinstance(client, ScriptedClient)
    assert client.model == "toy"
    assert client.rules == spec.script


async def test_openai_spec_uses_spec_model_and_key() -> None:
    spec = ModelSpec(
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        model="gpt-4o-mini",
        api_key_env="MY_KEY",
        timeout_s=5,
        max_retries=1,
    )
    client = create_client(spec, name="fast", environ={"MY_KEY": "sk-abc"})
    assert isinstance(client, OpenAIClient)
    assert client.model == "gpt-4o-mini"
    assert client.max_retries == 1
    assert client._headers["Authorization"] == "Bearer sk-abc"
    await client.close()


@pytest.mark.parametrize("environ", [{}, {"MY_KEY": ""}])
def test_missing_api_key_names_the_variable(environ: dict[str, str]) -> None:
    spec = ModelSpec(provider="openai", base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    with pytest.raises(UsageError, match="MY_KEY"):
        create_client(spec, name="fast", environ=environ)


async def test_no_api_key_env_means_no_auth() -> None:
    spec = ModelSpec(provider="openai", base_url="http://127.0.0.1:9/v1")
    client = create_client(spec, name="local", environ={})
    assert isinstance(client, OpenAIClient)
    assert "Authorization" not in client._headers


# --- endpoint options: max_completion_tokens, Azure OpenAI, proxies -------------


def ask(max_output_tokens: int | None = None) -> ModelRequest:
    return ModelRequest(
        model="ignored",
        messages=[{"role": "user", "content": "hello"}],
        max_output_tokens=max_output_tokens,
    )


@pytest.fixture
async def server() -> AsyncIterator[ModelTestServer]:
    async with ModelTestServer() as srv:
        yield srv


async def test_a_model_may_send_max_completion_tokens(server: ModelTestServer) -> None:
    for param in ("max_tokens", "max_completion_tokens"):
        spec = ModelSpec(provider="openai", base_url=server.url, max_tokens_param=param)
        client = create_client(spec, name="o3", environ={})
        try:
            await client.complete(ask(max_output_tokens=50))
        finally:
            await client.close()
    sent = [{k: v for k, v in r.items() if k.startswith("max_")} for r in server.requests]
    assert sent == [{"max_tokens": 50}, {"max_completion_tokens": 50}]


async def test_azure_openai_deployment_api_key_and_api_version(server: ModelTestServer) -> None:
    spec = ModelSpec.model_validate(
        {
            "provider": "openai",
            "api": "azure",
            "base_url": server.url.removesuffix("/v1") + "/",  # the resource's endpoint
            "model": "gpt-4o-prod",  # the deployment
            "api_version": "2024-10-21",
            "api_key_env": "AZURE_OPENAI_API_KEY",
        }
    )
    client = create_client(spec, name="azure", environ={"AZURE_OPENAI_API_KEY": "az-secret"})
    try:
        reply = await client.complete(ask())
    finally:
        await client.close()
    assert reply.content == "You said: hello"
    (sent,) = server.requests
    assert sent["_path"] == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert sent["_query"] == {"api-version": "2024-10-21"}
    assert sent["_headers"]["api-key"] == "az-secret"
    assert "authorization" not in sent["_headers"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"api": "azure"}, "api 'azure' needs `api_version`"),
        ({"api_version": "2024-10-21"}, "`api_version` is for api 'azure'"),
        ({"max_tokens_param": "max_length"}, "max_completion_tokens"),
    ],
)
def test_endpoint_option_mistakes_say_the_fix(fields: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        ModelSpec.model_validate({"provider": "openai", "base_url": "http://h/v1", **fields})


@pytest.fixture
async def proxy(server: ModelTestServer) -> AsyncIterator[EgressProxy]:
    """A real HTTP proxy on the loopback that records every request it forwards."""
    port = int(server.url.split(":")[2].split("/")[0])
    egress = await host_proxy(f"127.0.0.1:{port}")
    yield egress
    await egress.close()


async def test_requests_go_through_the_proxy_the_environment_names(
    server: ModelTestServer, proxy: EgressProxy
) -> None:
    spec = ModelSpec(provider="openai", base_url=server.url)
    proxied = f"http://127.0.0.1:{proxy.port}"
    environs = [
        {"HTTP_PROXY": proxied},  # through the proxy
        {"http_proxy": proxied, "HTTP_PROXY": "http://127.0.0.1:9"},  # lower case wins
        {"HTTP_PROXY": proxied, "NO_PROXY": "example.com,127.0.0.1"},  # listed: direct
        {"HTTPS_PROXY": proxied},  # for https:// URLs only: direct
    ]
    for environ in environs:
        client = create_client(spec, name="m", environ=environ)
        try:
            assert (await client.complete(ask())).content == "You said: hello"
        finally:
            await client.close()
    assert len(server.requests) == 4
    assert [(a.host, a.method, a.allowed) for a in proxy.attempts] == [
        ("127.0.0.1", "POST", True),
        ("127.0.0.1", "POST", True),
    ]


async def test_a_runtime_calls_its_models_through_the_proxy(
    server: ModelTestServer, proxy: EgressProxy, tmp_path: Path
) -> None:
    server.set_rules(rules({"content": "hi"}))
    environ = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": f"127.0.0.1:{proxy.port}"}
    async with Runtime(tmp_path / "rt.db", environ=environ) as rt:
        await rt.apply(resources(server.url))
        result = await rt.run("bot", "hello")
    assert result.status == "succeeded" and result.output == "hi"
    assert [(a.method, a.allowed) for a in proxy.attempts] == [("POST", True)]
