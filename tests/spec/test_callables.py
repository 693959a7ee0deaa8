"""apply reports every `module:function` that does not import, before storing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.cli.main import main
from agentrt.errors import SpecError
from agentrt.spec import check_callables, load_text
from agentrt.state import SqliteStore

YAML = """\
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: gone}
spec:
  kind: python
  callable: tests.no_such_module:fn
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: typo}
spec:
  kind: python
  callable: tests.sample_tools:ad
  lookup: tests.sample_tools:lookup_charge
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: broken}
spec: {kind: python, callable: "tests.sample_tools:add", lookup: "tests.broken_module:f"}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot}
spec:
  model: m
  hooks:
    on_step: tests.sample_hooks:nope
"""


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that raises while it is imported, found as ``tests.broken_module``."""
    package = tmp_path / "tests"
    package.mkdir()
    (package / "broken_module.py").write_text("raise RuntimeError('half-written module')\n")
    import tests

    monkeypatch.setattr(tests, "__path__", [*tests.__path__, str(package)])


def test_every_callable_that_does_not_import_is_named_with_its_field_and_line(
    broken_module: None,
) -> None:
    with pytest.raises(SpecError) as caught:
        check_callables(load_text(YAML, "tools.yaml"))
    issues = {(i.resource, i.field_path): i for i in caught.value.issues}
    assert set(issues) == {
        ("Tool/gone", "spec.callable"),
        ("Tool/typo", "spec.callable"),
        ("Tool/broken", "spec.lookup"),
        ("Agent/bot", "spec.hooks.on_step"),
    }
    gone = issues["Tool/gone", "spec.callable"]
    assert gone.file == "tools.yaml" and gone.line == 6
    assert "cannot import module 'tests.no_such_module'" in gone.message
    assert "PYTHONPATH" in gone.fix
    assert "no attribute 'ad'" in issues["Tool/typo", "spec.callable"].message
    broken = issues["Tool/broken", "spec.lookup"]
    assert "RuntimeError: half-written module" in broken.message
    assert issues["Agent/bot", "spec.hooks.on_step"].line == 27


async def test_apply_stores_nothing_when_a_callable_does_not_import(
    store: SqliteStore, tmp_path: Path
) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(YAML.split("---")[0])
    async with Runtime(store) as rt:
        with pytest.raises(SpecError, match=r"spec\.callable"):
            await rt.apply(path)
    assert await store.list_resources() == []


def test_the_cli_prints_the_file_field_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "cli.db"))
    path = tmp_path / "tools.yaml"
    path.write_text(YAML.split("---")[0])
    assert main(["apply", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: Tool/gone: field spec.callable" in err
    assert "error: 'tests.no_such_module:fn': cannot import module" in err
    assert "Traceback" not in err
