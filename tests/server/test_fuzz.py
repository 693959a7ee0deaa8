"""Property-based fuzzing of the whole API from its own OpenAPI document.

schemathesis generates requests for every operation of ``docs/openapi.json``
(valid ones and ones that break the schema) and sends them to a real
``agentrt serve``, with an admin key of a tenant that has an Agent and a finished
run to find. Every answer must be a declared status with a body of its declared
schema, never a 5xx; a request that breaks the schema must be refused with a 4xx.
The examples per operation are bounded so the module takes under a minute.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

from agentrt.models.testserver import ModelTestServer
from tests.server.conftest import agent_yaml
from tests.server.harness import ROOT, Served, start_serve

# A request the schema allows may still be refused for what it asks, with a 400 that
# says why (the API's rule: 422 breaks the schema, 400 breaks a rule beyond it, such
# as a cursor this API never gave); it must never be a 422 or a 5xx.
# Resources go as YAML text, which the schema can only call a string: a string that is
# no resource is the structured 422 of the resources' validation.
ACCEPTED = ["2xx", "400", "401", "403", "404", "409", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        "operations": [
            {
                "include-path": "/v1/resources",
                "include-method": "POST",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
        ],
    }
)
SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json", config=CONFIG)
EXAMPLES = 10


class Target:
    """Where the fuzzer sends its requests, with the headers it adds to each."""

    def __init__(self, served: Served, key: str) -> None:
        self.base = served.base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = requests.Session()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A serve with a generous request rate (the fuzzer is one fast client) and a tenant
    holding an Agent ``bot`` and one finished run."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    model = ModelTestServer()
    model.start_in_thread()
    served = start_serve(f"sqlite:///{tmp / 'fuzz.db'}", tmp, model, "--rate", "100000")
    try:
        key = asyncio.run(served.key(f"t-{secrets.token_hex(4)}", "admin", name="fuzz"))
        target = Target(served, key)
        _seed(target, model.url)
        yield target
    finally:
        served.stop()
        model.stop_thread()


def _seed(target: Target, model_url: str) -> None:
    applied = target.http.post(
        target.base + "/v1/resources",
        data=agent_yaml(model_url),
        headers={**target.headers, "Content-Type": "application/yaml"},
        timeout=30,
    )
    assert applied.status_code == 200, applied.text
    ran = target.http.post(
        target.base + "/v1/queries",
        json={"target": "bot", "input": "hello", "wait": True},
        headers=target.headers,
        timeout=30,
    )
    assert ran.status_code in (200, 201, 202), ran.text


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema(case: Any, target: Target) -> None:
    case.call_and_validate(
        base_url=target.base, session=target.http, headers=target.headers, timeout=30
    )
