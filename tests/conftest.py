"""Shared fixtures: a real SQLite store, the OpenAI-compatible test server, resources."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentrt.models.testserver import ModelTestServer
from agentrt.spec import Resource, ScriptedRule, parse_resource
from agentrt.state import SqliteStore, Store


@pytest.fixture(autouse=True)
def _sandbox_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandbox files (bundles, artifacts) of tests stay out of the user's cache."""
    if "AGENTRT_SANDBOX_DIR" not in os.environ:
        monkeypatch.setenv("AGENTRT_SANDBOX_DIR", str(tmp_path_factory.getbasetemp() / "sandboxes"))


@pytest.fixture
async def model_server() -> AsyncIterator[ModelTestServer]:
    """A local OpenAI-compatible server, scripted per test with ``set_rules``."""
    server = ModelTestServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh SQLite store in a temporary file."""
    s = await SqliteStore.open(tmp_path / "agentrt.db")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store of each backend: SQLite in a temporary file, PostgreSQL in a schema
    of its own on the test server."""
    if request.param == "sqlite":
        async with await SqliteStore.open(tmp_path / "agentrt.db") as store:
            yield store
        return
    from agentrt.state import PostgresStore
    from tests.pg import fresh_schema, url_of

    with fresh_schema() as schema:
        async with PostgresStore.from_url(url_of(schema)) as pg:
            yield pg


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file test tools append their side effects to."""
    path = tmp_path / "effects.txt"
    monkeypatch.setenv("AGENTRT_TEST_EFFECTS", str(path))
    return path


@pytest.fixture
def pg_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh schema with an ``effects`` table; its name is in AGENTRT_TEST_PG_SCHEMA."""
    try:
        import psycopg

        from tests.pg_effects import DSN

        conn = psycopg.connect(DSN, autocommit=True)
    except Exception as exc:  # no driver, no server: say so loudly (CI=true turns it red)
        pytest.skip(
            f"SKIPPED LOUDLY: these tests need PostgreSQL (database test at 127.0.0.1:5432, "
            f"user postgres, trust auth) and psycopg: {exc}"
        )
    schema = f"agentrt_test_{secrets.token_hex(4)}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".effects (seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, '
            "amount INTEGER NOT NULL, pid INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL "
            "DEFAULT clock_timestamp())"
        )
        monkeypatch.setenv("AGENTRT_TEST_PG_SCHEMA", schema)
        try:
            yield schema
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def rules(*steps: dict[str, Any], match: str = ".*") -> list[ScriptedRule]:
    """One scripted rule with the given steps."""
    return [ScriptedRule.model_validate({"match": match, "steps": list(steps)})]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A scripted tool call."""
    return {"name": name, "arguments": arguments}


TOOLS: dict[str, dict[str, Any]] = {
    "add": {"callable": "tests.sample_tools:add", "idempotent": True},
    "record": {"callable": "tests.sample_tools:record", "idempotent": True},
    "charge": {"callable": "tests.sample_tools:charge", "idempotent": False},
    "charge_lookup": {
        "callable": "tests.sample_tools:charge",
        "lookup": "tests.sample_tools:lookup_charge",
    },
    "sleep": {"callable": "tests.sample_tools:sleep", "idempotent": True},
    "add_quota": {
        "callable": "tests.sample_tools:add",
        "idempotent": True,
        "quotas": {"per_run": 2, "per_session": 3},
    },
    "charge_approved": {
        "callable": "tests.sample_tools:charge",
        "approval": {"required": True, "when": {"amount": "^[0-9]{3,}$"}},
    },
    "fail": {"callable": "tests.sample_tools:fail"},
    "write_file": {"callable": "tests.sample_tools:write_file", "idempotent": False},
    # Its effect is a row in PostgreSQL (tests/pg_effects.py); not idempotent, no lookup.
    "pg_charge": {"callable": "tests.pg_effects:pg_charge", "idempotent": False},
}


def resources(
    base_url: str,
    *,
    tools: list[str] | None = None,
    agent: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    extra_models: dict[str, dict[str, Any]] | None = None,
    namespace: str = "default",
) -> list[Resource]:
    """Model (over HTTP to the test server), the named test tools, and Agent ``bot``."""
    meta = lambda name: {"name": name, "namespace": namespace}  # noqa: E731
    docs: list[dict[str, Any]] = [
        {
            "kind": "Model",
            "metadata": meta("m"),
            "spec": {
                "provider": "openai",
                "base_url": base_url,
                "max_retries": 0,
                "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                **(model or {}),
            },
        }
    ]
    for name, spec in (extra_models or {}).items():
        docs.append({"kind": "Model", "metadata": meta(name), "spec": spec})
    for name in tools or []:
        docs.append(
            {"kind": "Tool", "metadata": meta(name), "spec": {"kind": "python", **TOOLS[name]}}
        )
    docs.append(
        {
            "kind": "Agent",
            "metadata": meta("bot"),
            "spec": {
                "model": "m",
                "instructions": "You are a test bot.",
                "tools": tools or [],
                "loop": {"retry": {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}},
                **(agent or {}),
            },
        }
    )
    return [parse_resource({"apiVersion": "agentrt.dev/v1", **doc}) for doc in docs]


def tenant_resource(name: str, **spec: Any) -> Resource:
    """A ``Tenant`` resource (its share and limits), in the reserved namespace."""
    return parse_resource(
        {"apiVersion": "agentrt.dev/v1", "kind": "Tenant",
         "metadata": {"name": name, "namespace": "agentrt-system"}, "spec": spec}
    )  # fmt: skip


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """How many of the (start, end) spans overlapped at most."""
    edges = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: nothing may silently not run."""
    import os

    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and session.exitstatus == 0:
        print(f"\nCI=true: {len(skipped)} test(s) were skipped; that fails CI.")
        session.exitstatus = 1
