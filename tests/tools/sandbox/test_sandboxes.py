"""The sandboxes of one Runtime: probed once, shared by its code tools, closed with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrt import Runtime
from agentrt.settings import Settings
from agentrt.spec.resources import ToolSpec
from agentrt.state import SqliteStore
from agentrt.tools.code import CodeTool
from agentrt.tools.factory import ToolFactory
from agentrt.tools.sandbox.sandboxes import Sandboxes

UNSAFE = ToolSpec.model_validate(
    {"kind": "code", "code": {"sandbox": "process", "allow_unsafe": True}}
)


async def test_a_backend_is_probed_once_per_runtime_not_once_per_process(tmp_path: Path) -> None:
    first, second = Sandboxes(tmp_path), Sandboxes(tmp_path)
    backend, probe = await first.probe("process")
    assert probe.ok
    again, _ = await first.probe("process")
    assert again is backend  # remembered by this Runtime's sandboxes
    other, _ = await second.probe("process")
    assert other is not None and other is not backend  # another Runtime probes for itself
    await first.close()
    await second.close()


async def test_choosing_reaps_a_backend_once_and_fails_once_closed(tmp_path: Path) -> None:
    sandboxes = Sandboxes(tmp_path)
    chosen = await sandboxes.choose(
        "process", allow_unsafe=True, policy_needs_network_allowlist=False
    )
    assert chosen.name == "process"
    assert (
        await sandboxes.choose("process", allow_unsafe=True, policy_needs_network_allowlist=False)
        is chosen
    )
    await sandboxes.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sandboxes.choose("process", allow_unsafe=True, policy_needs_network_allowlist=False)


async def test_the_code_tools_of_one_runtime_share_its_sandboxes(tmp_path: Path) -> None:
    # Two Tools writing one run's scratch take turns on one lock, so neither sees
    # half of the other's files.
    factory = ToolFactory(Settings(sandbox_dir=tmp_path / "sandboxes"))
    one, two = factory.build("one", UNSAFE), factory.build("two", UNSAFE)
    assert isinstance(one, CodeTool) and isinstance(two, CodeTool)
    assert one.sandboxes is two.sandboxes is factory.sandboxes
    assert one.workdir == tmp_path / "sandboxes"
    scratch = tmp_path / "run"
    assert one.sandboxes.scratch_lock(scratch) is two.sandboxes.scratch_lock(scratch)
    assert one.sandboxes.scratch_lock(scratch) is not one.sandboxes.scratch_lock(tmp_path / "x")
    other = ToolFactory(Settings(sandbox_dir=tmp_path / "sandboxes")).build("one", UNSAFE)
    assert isinstance(other, CodeTool) and other.sandboxes is not one.sandboxes
    for tool in (one, two, other):
        await tool.close()
    await factory.close()


async def test_a_runtime_closes_its_sandboxes(store: SqliteStore, tmp_path: Path) -> None:
    async with Runtime(store, settings=Settings(sandbox_dir=tmp_path)) as rt:
        sandboxes = rt.executor.tool_factory.sandboxes
        assert sandboxes.workdir == tmp_path
        await sandboxes.choose("process", allow_unsafe=True, policy_needs_network_allowlist=False)
    with pytest.raises(RuntimeError, match="closed"):
        await sandboxes.choose("process", allow_unsafe=True, policy_needs_network_allowlist=False)
