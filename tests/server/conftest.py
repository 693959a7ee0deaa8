"""One ``agentrt serve`` process for the API tests of a module, over SQLite, with a
scripted model server; each test gets keys of a tenant of its own."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from agentrt.models.testserver import ModelTestServer
from tests.server.harness import Api, Served, start_serve


@contextlib.contextmanager
def serving(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[Served]:
    """``agentrt serve`` (with ``extra`` flags) over a new SQLite store, and its model
    server, until the block ends."""
    tmp = tmp_path_factory.mktemp("serve")
    model = ModelTestServer()
    model.start_in_thread()
    try:
        server = start_serve(f"sqlite:///{tmp / 'api.db'}", tmp, model, *extra)
        try:
            yield server
        finally:
            server.stop()
    finally:
        model.stop_thread()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A running ``agentrt serve`` (and its model server), shared by a module's tests."""
    with serving(tmp_path_factory) as server:
        yield server


@pytest.fixture
def tenant() -> str:
    """A tenant name no other test uses."""
    return f"t-{secrets.token_hex(4)}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def admin(served: Served, tenant: str, http: aiohttp.ClientSession) -> Api:
    """An admin key of the test's tenant."""
    return Api(served, await served.key(tenant, "admin", name="admin"), http)


def agent_yaml(model_url: str, *, tools: bool = False) -> str:
    """A Model over the scripted server and Agent ``bot`` (with the ``add`` tool)."""
    tool = (
        "---\napiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: add}\n"
        "spec: {kind: python, callable: 'tests.sample_tools:add', idempotent: true}\n"
    )
    return (
        "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\n"
        f"spec: {{provider: openai, base_url: '{model_url}', max_retries: 0}}\n"
        + (tool if tools else "")
        + "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: bot}\n"
        + "spec: {model: m, instructions: be brief"
        + (", tools: [add]}\n" if tools else "}\n")
    )
