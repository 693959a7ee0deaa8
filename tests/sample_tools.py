"""Tools used by the tests. Side effects go to the file named by AGENTRT_TEST_EFFECTS.

Each line is ``idempotency_key<TAB>tool<TAB>text`` so tests can count how often
an effect happened per key.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentrt.errors import ToolError
from agentrt.tools.base import ToolContext


def _effects() -> Path:
    return Path(os.environ["AGENTRT_TEST_EFFECTS"])


def _lines() -> list[list[str]]:
    path = _effects()
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line]


def _append(ctx: ToolContext, tool: str, text: str) -> None:
    with _effects().open("a", encoding="utf-8") as f:
        f.write(f"{ctx.idempotency_key}\t{tool}\t{text}\n")
        f.flush()
        os.fsync(f.fileno())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def record(text: str, ctx: ToolContext) -> str:
    """Record a line once per idempotency key (idempotent: safe to run again)."""
    for key, tool, old in _lines():
        if key == ctx.idempotency_key and tool == "record":
            return f"recorded {old}"
    _append(ctx, "record", text)
    time.sleep(float(os.environ.get("AGENTRT_TEST_RECORD_SLEEP", "0")))
    return f"recorded {text}"


def charge(amount: int, ctx: ToolContext) -> str:
    """Charge an amount (NOT idempotent: every call is an effect)."""
    _append(ctx, "charge", str(amount))
    marker = os.environ.get("AGENTRT_TEST_CHARGE_MARKER")
    if marker:  # written whole, then named: whoever sees it can read it
        Path(marker + ".tmp").write_text(ctx.idempotency_key)
        os.replace(marker + ".tmp", marker)
    time.sleep(float(os.environ.get("AGENTRT_TEST_CHARGE_SLEEP", "0")))
    return f"charged {amount}"


def write_file(path: str, text: str, ctx: ToolContext) -> str:
    """Write a file (recorded as an effect, never written: tests check who may)."""
    _append(ctx, "write", path)
    return f"wrote {len(text)} bytes to {path}"


def lookup_charge(ctx: ToolContext) -> str | None:
    """Whether the charge with this key happened."""
    for key, tool, amount in _lines():
        if key == ctx.idempotency_key and tool == "charge":
            return f"charged {amount}"
    return None


async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    import asyncio

    await asyncio.sleep(seconds)
    return f"slept {seconds}"


def fail(message: str) -> str:
    """Always fail."""
    raise ToolError(message)


def fill_disk(path: str) -> str:
    """Fill the file system holding ``path`` with one file, once: on a rerun, do nothing."""
    marker = Path(f"{path}.started")
    if marker.exists():
        return "filled before"
    marker.touch()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return "filled"
