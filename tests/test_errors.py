"""Errors recorded in the event log or sent over HTTP round-trip through dicts."""

from __future__ import annotations

import pytest

from agentrt import _json
from agentrt.errors import (
    BudgetExhausted,
    LeaseLost,
    ModelError,
    NondeterminismError,
    OutputTruncated,
    RunError,
    SpecError,
    SpecIssue,
    StartError,
    StepTimeout,
    ToolError,
    UsageError,
    error_from_dict,
)


@pytest.mark.parametrize(
    "error",
    [
        RunError("boom"),
        ModelError("rate limited", retryable=True, status=429, retry_after=1.5),
        ToolError("no such file", retryable=False),
        StepTimeout("model did not answer"),
        BudgetExhausted("budgets.max_tokens=10 reached"),
        StartError("Tool t: cannot import module 'gone'"),
        OutputTruncated("the reply at step 1 was cut off"),
        NondeterminismError("step 3 differs"),
        LeaseLost("owned elsewhere"),
    ],
)
def test_run_errors_round_trip_through_json(error: RunError) -> None:
    data = _json.loads(_json.dumps(error.to_dict()))
    again = error_from_dict(data)
    assert type(again) is type(error)
    assert again.to_dict() == error.to_dict()
    assert again.retryable == error.retryable


def test_unknown_code_becomes_a_plain_run_error() -> None:
    again = error_from_dict({"code": "from_the_future", "message": "m"})
    assert type(again) is RunError and again.message == "m"


def test_spec_error_is_a_usage_error_and_limits_its_length() -> None:
    issues = [SpecIssue("f.yaml", f"Tool/t{i}", "spec.kind", "bad", "fix it", i) for i in range(15)]
    err = SpecError(issues)
    assert isinstance(err, UsageError)
    text = err.render()
    assert "f.yaml:0: Tool/t0: field spec.kind" in text and "... and 5 more problems" in text
