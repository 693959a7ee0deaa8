"""Settings: the environment is read in one place, and everything else is handed what it needs."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.errors import UsageError
from agentrt.models.testserver import ModelTestServer
from agentrt.settings import Settings, default_sandbox_dir
from agentrt.state import SqliteStore
from tests.conftest import resources, rules

PACKAGE = Path(__file__).resolve().parent.parent / "agentrt"
# Where reading the environment is allowed: Settings.from_env and the command line.
READERS = (PACKAGE / "settings.py", PACKAGE / "cli")
_OS_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _reads_of_the_environment(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in _OS_ENVIRONMENT
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & _OS_ENVIRONMENT
        ):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_the_environment_is_read_only_by_settings_and_the_command_line() -> None:
    reads = [
        where
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path == r or r in path.parents for r in READERS)
        for where in _reads_of_the_environment(path)
    ]
    assert not reads, "read the environment in Settings.from_env instead:\n" + "\n".join(reads)


def test_from_env_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            "AGENTRT_SANDBOX_DIR": "/srv/sandboxes",
            "AGENTRT_STORE": "sqlite:///srv/agentrt.db",
            "AGENTRT_SCRATCH": "/srv/scratch",
            "AGENTRT_LEASE_TTL": "12.5",
            "AGENTRT_RETENTION": "7d",
            "AGENTRT_SERVER": "https://agentrt.internal:8080",
            "AGENTRT_API_KEY": "agrt_k_s",
            "USER": "ada",
            "NO_COLOR": "",
            "OPENAI_API_KEY": "sk-1",
        }
    )
    assert settings.sandbox_dir == Path("/srv/sandboxes")
    assert settings.store == "sqlite:///srv/agentrt.db"
    assert settings.scratch_dir == Path("/srv/scratch")
    assert settings.lease_ttl_s == 12.5
    assert settings.retention == "7d"
    assert (settings.server, settings.api_key) == ("https://agentrt.internal:8080", "agrt_k_s")
    assert settings.user == "ada"
    assert settings.no_color  # set, even empty, as no-color.org says
    assert settings.environ["OPENAI_API_KEY"] == "sk-1"


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings == Settings(environ={})
    assert settings.sandbox_dir == default_sandbox_dir()
    assert settings.sandbox_dir.name == "sandboxes"
    assert (settings.store, settings.scratch_dir, settings.user) == (None, None, None)
    assert (settings.lease_ttl_s, settings.retention, settings.no_color) == (30.0, "30d", False)


@pytest.mark.parametrize(
    ("raw", "says"), [("soon", "give a number of seconds"), ("0", "more than 0"), ("nan", "than 0")]
)
def test_a_bad_lease_ttl_names_the_variable_and_the_fix(raw: str, says: str) -> None:
    with pytest.raises(UsageError, match=f"AGENTRT_LEASE_TTL='{raw}': .*{says}"):
        Settings.from_env({"AGENTRT_LEASE_TTL": raw})


def test_a_server_that_is_not_a_url_names_the_variable_and_the_fix() -> None:
    with pytest.raises(UsageError, match="AGENTRT_SERVER='localhost:8080': give the server's URL"):
        Settings.from_env({"AGENTRT_SERVER": "localhost:8080"})


def test_settings_are_frozen_and_keep_their_own_copy_of_the_environment() -> None:
    source = {"KEY": "one"}
    settings = Settings.from_env(source)
    source["KEY"] = "two"
    assert settings.environ["KEY"] == "one"
    with pytest.raises(TypeError):
        settings.environ["KEY"] = "three"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.retention = "1d"  # type: ignore[misc]
    derived = dataclasses.replace(settings, retention="1d")
    assert (derived.retention, derived.environ["KEY"]) == ("1d", "one")
    given = {"KEY": "one"}
    built = Settings(environ=given)
    given["KEY"] = "two"
    assert built.environ["KEY"] == "one"


async def test_a_runtime_uses_its_settings_environment_not_the_process_one(
    store: SqliteStore, model_server: ModelTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_TEST_KEY", "from-the-process")
    model_server.set_rules(rules({"content": "hi"}))
    model = {"api_key_env": "AGENTRT_TEST_KEY"}
    settings = Settings(environ={"AGENTRT_TEST_KEY": "from-the-settings"})
    async with Runtime(store, settings=settings) as rt:
        await rt.apply(resources(model_server.url, model=model))
        assert (await rt.run("bot", "x")).ok
    async with Runtime(store, environ={"AGENTRT_TEST_KEY": "from-environ"}) as rt:
        assert (await rt.run("bot", "x")).ok
    async with Runtime(store) as rt:  # Settings.from_env(): the process, read once, now
        monkeypatch.setenv("AGENTRT_TEST_KEY", "changed-after-start")
        assert (await rt.run("bot", "x")).ok
    keys = [r["_headers"]["authorization"] for r in model_server.requests]
    assert keys == ["Bearer from-the-settings", "Bearer from-environ", "Bearer from-the-process"]
