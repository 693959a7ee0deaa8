"""The sandbox backends by name, strongest first, imported only when used."""

from __future__ import annotations

from pathlib import Path

from agentrt._imports import import_callable
from agentrt.tools.sandbox.base import SandboxBackend

__all__ = ["BACKENDS", "make_backend"]

# Strongest isolation first: "auto" picks the first that works on this machine.
BACKENDS: dict[str, str] = {
    "gvisor": "agentrt.tools.sandbox.gvisor:GvisorBackend",
    "bubblewrap": "agentrt.tools.sandbox.bubblewrap:BubblewrapBackend",
    "process": "agentrt.tools.sandbox.process:ProcessBackend",
}


def make_backend(name: str, *, workdir: Path) -> SandboxBackend:
    """Construct backend ``name``; ``workdir`` is a directory it owns (bundles, artifacts)."""
    cls = import_callable(BACKENDS[name], what=f"sandbox backend {name}")
    backend: SandboxBackend = cls(workdir=workdir)
    return backend
