"""The ``code`` tool end to end: Python and shell in a real sandbox, scratch kept per run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentrt.errors import ToolError, UsageError
from agentrt.spec.resources import ToolSpec
from agentrt.tools.base import ToolContext
from agentrt.tools.code import CodeTool
from agentrt.tools.sandbox.cgroups import CgroupUnavailable, detect_layout
from agentrt.tools.sandbox.registry import make_backend
from agentrt.tools.sandbox.selection import choose_backend
from tests.tools.sandbox import not_tested

MakeTool = Callable[..., CodeTool]


def own_cgroups() -> list[Path]:
    try:
        layout = detect_layout()
    except CgroupUnavailable:
        return []
    prefix = f"agentrt-{os.getpid()}-"
    return [p for base in layout.base_dirs() for p in base.iterdir() if p.name.startswith(prefix)]


@pytest.fixture
async def make_tool(tmp_path: Path) -> AsyncIterator[MakeTool]:
    """Build CodeTools over a private workdir; close them all afterwards."""
    workdir = tmp_path / "workdir"
    probe = await make_backend("bubblewrap", workdir=workdir).probe()
    if not probe.ok:
        not_tested(f"BUBBLEWRAP IS NOT AVAILABLE, CODE TOOL NOT TESTED: {probe.detail}")
    tools: list[CodeTool] = []

    def make(**spec: Any) -> CodeTool:
        tool = CodeTool(
            "run_code",
            ToolSpec.model_validate({"kind": "code", **spec}),
            environ=os.environ,  # permissions.env picks from the process environment
            workdir=workdir,
            pool_size=1,
        )
        tools.append(tool)
        return tool

    yield make
    for tool in tools:
        await tool.close()
    assert own_cgroups() == []
    scratch = workdir / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []


def ctx(scratch: Path | None, call_id: str = "c1") -> ToolContext:
    return ToolContext("run-1", 1, call_id, "default", None, scratch=scratch)


async def test_definition(make_tool: MakeTool) -> None:
    (definition,) = await make_tool(description="Run Python.").definitions()
    assert definition.name == "run_code"
    assert definition.description == "Run Python."
    assert definition.parameters["required"] == ["code"]
    assert list(definition.parameters["properties"]) == ["code"]


async def test_python_runs_and_files_persist_across_calls(
    make_tool: MakeTool, tmp_path: Path
) -> None:
    tool = make_tool()
    await tool.definitions()  # starts warming
    scratch = tmp_path / "run-scratch"
    first = await tool.call(
        "run_code",
        {"code": "open('notes.txt', 'w').write('from call 1')\nprint(6 * 7)"},
        ctx(scratch),
    )
    assert (first.output, first.is_error) == ("42", False)
    picked = await choose_backend(
        "auto", allow_unsafe=False, policy_needs_network_allowlist=False, workdir=tool.workdir
    )
    assert first.trace["backend"] == picked.name != "process"  # the strongest that works
    assert first.trace["reason"] == "ok"
    assert first.trace["exit_code"] == 0
    assert (scratch / "notes.txt").read_text() == "from call 1"
    second = await tool.call(
        "run_code", {"code": "print(open('notes.txt').read())"}, ctx(scratch, "c2")
    )
    assert second.output == "from call 1"
    assert second.trace["sandbox_id"] != first.trace["sandbox_id"]


async def test_shell(make_tool: MakeTool, tmp_path: Path) -> None:
    tool = make_tool(code={"language": "shell"})
    result = await tool.call("run_code", {"code": "echo hello; pwd; ls"}, ctx(tmp_path / "s"))
    assert result.output == "hello\n/scratch\nmain.sh"
    assert not result.is_error


async def test_without_a_run_scratch_the_files_do_not_outlive_the_call(
    make_tool: MakeTool,
) -> None:
    tool = make_tool()
    await tool.call("run_code", {"code": "open('x.txt', 'w').write('x')"}, ctx(None))
    result = await tool.call("run_code", {"code": "import os; print(os.listdir())"}, ctx(None))
    assert result.output == "['main.py']"


async def test_nonzero_exit_is_an_error_with_stderr(make_tool: MakeTool, tmp_path: Path) -> None:
    tool = make_tool()
    result = await tool.call(
        "run_code",
        {"code": "print('partial')\nraise ValueError('bad input')"},
        ctx(tmp_path / "run"),
    )
    assert result.is_error
    assert result.output.startswith("partial\n[stderr]\n")
    assert "ValueError: bad input" in result.output
    assert result.output.endswith("[exited with code 1]")
    assert result.trace["exit_code"] == 1
    assert "ValueError" in result.trace["stderr"]


async def test_limits_end_with_a_named_reason(make_tool: MakeTool, tmp_path: Path) -> None:
    tool = make_tool(limits={"memory_mb": 64}, timeout_s=1)
    bomb = await tool.call(
        "run_code",
        {"code": "a = []\nwhile True:\n    a.append(b'x' * (1 << 20))"},
        ctx(tmp_path / "run"),
    )
    assert bomb.is_error
    assert bomb.output.endswith("[killed: memory limit of 64 MB exceeded (oom_killed)]")
    assert bomb.trace["reason"] == "oom_killed"
    assert bomb.trace["exit_code"] is None
    slow = await tool.call(
        "run_code", {"code": "import time; time.sleep(60)"}, ctx(tmp_path / "run")
    )
    assert slow.output.endswith("[killed: wall-clock limit of 1 s exceeded (timeout)]")


async def test_environment_is_the_allow_list(
    make_tool: MakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRT_TEST_ALLOWED", "visible")
    monkeypatch.setenv("AGENTRT_TEST_SECRET", "s3cr3t")
    tool = make_tool(permissions={"env": ["AGENTRT_TEST_ALLOWED", "AGENTRT_TEST_UNSET"]})
    result = await tool.call(
        "run_code", {"code": "import os; print(sorted(os.environ))"}, ctx(tmp_path / "run")
    )
    assert "AGENTRT_TEST_ALLOWED" in result.output
    assert "AGENTRT_TEST_SECRET" not in result.output
    assert "AGENTRT_TEST_UNSET" not in result.output


async def test_bad_arguments(make_tool: MakeTool, tmp_path: Path) -> None:
    tool = make_tool()
    with pytest.raises(ToolError, match="`code`"):
        await tool.call("run_code", {"source": "print(1)"}, ctx(tmp_path / "run"))


async def test_a_symlink_left_by_the_sandbox_is_not_followed(
    make_tool: MakeTool, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    tool = make_tool()
    scratch = tmp_path / "run"
    # The code replaces main.py with a symlink to a host path: it never reaches the
    # run's directory, and the next call writes main.py again, not through a link.
    first = await tool.call(
        "run_code",
        {"code": f"import os; os.remove('main.py'); os.symlink({str(victim)!r}, 'main.py')"},
        ctx(scratch),
    )
    assert not (scratch / "main.py").exists()
    assert "main.py (a symlink out of the directory)" in first.output
    result = await tool.call("run_code", {"code": "print('second')"}, ctx(scratch, "c2"))
    assert result.output == "second"
    assert victim.read_text() == "untouched"


async def test_unsafe_backend_needs_allow_unsafe(tmp_path: Path) -> None:
    spec = {"kind": "code", "code": {"sandbox": "process"}}
    refused = CodeTool("run_code", ToolSpec.model_validate(spec), workdir=tmp_path)
    with pytest.raises(UsageError, match="allow_unsafe"):
        await refused.call("run_code", {"code": "print(1)"}, ctx(tmp_path / "s"))
    await refused.close()
    spec["code"] = {"sandbox": "process", "allow_unsafe": True}
    allowed = CodeTool("run_code", ToolSpec.model_validate(spec), workdir=tmp_path)
    try:
        result = await allowed.call("run_code", {"code": "print(1 + 1)"}, ctx(tmp_path / "s"))
    finally:
        await allowed.close()
    assert (result.output, result.trace["backend"]) == ("2", "process")
