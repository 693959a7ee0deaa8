"""create_client: provider selection, model id and API key lookup."""

from __future__ import annotations

import pytest

from agentrt.errors import UsageError
from agentrt.models import OpenAIClient, ScriptedClient, create_client
from agentrt.spec.resources import ModelSpec


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
