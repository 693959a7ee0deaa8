"""docs/resources.md is generated from the models and must match them."""

from __future__ import annotations

from pathlib import Path

from agentrt.spec.markdown import render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "resources.md"


def test_resource_reference_is_current() -> None:
    assert DOC.read_text() == render_reference(), (
        "docs/resources.md is stale: run `python -m agentrt.spec.markdown > docs/resources.md`"
    )


def test_reference_covers_every_kind_and_nested_setting() -> None:
    text = render_reference()
    for heading in (
        "## Model",
        "## Tool",
        "## Agent",
        "## Team",
        "## Query",
        "### LoopPolicy",
        "### RetryPolicy",
    ):
        assert heading in text
    assert "| `max_steps` | int | `20` |" in text
