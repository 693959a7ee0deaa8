"""The OpenAPI document the server serves is the one checked into docs/."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.server.harness import Api

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "openapi.json"


async def test_the_served_document_is_the_checked_in_one(admin: Api) -> None:
    served = await admin.call("GET", "/v1/openapi.json")
    assert served.status == 200
    printed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentrt.cli.main", "serve", "--openapi"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert json.loads(printed.stdout) == served.body
    assert json.loads(CHECKED_IN.read_text()) == served.body, (
        "docs/openapi.json is out of date: agentrt serve --openapi > docs/openapi.json"
    )
