"""The sandbox backends by name, imported only when used, and the order ``auto`` tries them.

``auto`` picks the first that works of :data:`AUTO_ORDER`: bubblewrap, then
gVisor. Both are safe for model-written code here (an unprivileged uid inside
and out, no capabilities, read-only kernel knobs, quotas; bubblewrap adds a
seccomp filter, gVisor a kernel of its own), and bubblewrap is the fast one: a
code step through a whole run costs ~60 ms warm against ~140 ms under gVisor,
and its first ~0.3 s against ~1.4 s (``make bench``, docs/performance.md).
Choose ``sandbox: gvisor`` in a Tool for the stronger isolation of a separate
kernel, at that price.
"""

from __future__ import annotations

from pathlib import Path

from agentrt._imports import import_callable
from agentrt.tools.sandbox.base import SandboxBackend

__all__ = ["AUTO_ORDER", "BACKENDS", "make_backend"]

# Strongest isolation first (the order `agentrt doctor` lists them in).
BACKENDS: dict[str, str] = {
    "gvisor": "agentrt.tools.sandbox.gvisor:GvisorBackend",
    "bubblewrap": "agentrt.tools.sandbox.bubblewrap:BubblewrapBackend",
    "process": "agentrt.tools.sandbox.process:ProcessBackend",
}

# What `auto` tries, in order: safe for model-written code and fast (see above).
# `process` isolates nothing: `auto` takes it only for a Tool with allow_unsafe.
AUTO_ORDER: tuple[str, ...] = ("bubblewrap", "gvisor", "process")


def make_backend(name: str, *, workdir: Path) -> SandboxBackend:
    """Construct backend ``name``; ``workdir`` is a directory it owns (bundles, artifacts)."""
    cls = import_callable(BACKENDS[name], what=f"sandbox backend {name}")
    backend: SandboxBackend = cls(workdir=workdir)
    return backend
