"""Which sandbox backend runs model-written code here: the first of ``AUTO_ORDER`` that works.

Backends come from the registry (see :data:`~.registry.AUTO_ORDER` for why
bubblewrap comes first). Each is probed once per
process (a real self-test, cached), because probing starts sandboxes. A backend
whose module is not installed yet, or that cannot be constructed, counts as
unavailable with the reason. ``process`` isolates nothing, so it is chosen for
model-written code only when the Tool says ``allow_unsafe: true``.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from agentrt.errors import UsageError
from agentrt.tools.sandbox.base import ProbeResult, SandboxBackend
from agentrt.tools.sandbox.registry import AUTO_ORDER, BACKENDS, make_backend

__all__ = ["choose_backend", "clear_cache", "probe_all", "probe_backend"]

_UNSAFE = "process"
_probes: dict[tuple[str, Path], tuple[SandboxBackend | None, ProbeResult]] = {}
# Locks are bound to the loop they first wait in, so there is one set per loop.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, Path], asyncio.Lock]]
_locks = weakref.WeakKeyDictionary()

_ALLOW_UNSAFE_HINT = (
    "to run it without isolation anyway, set `code: {allow_unsafe: true}` in the Tool "
    "spec (only for code you trust); to isolate it, install bubblewrap (and give the "
    "runtime writable cgroups) or gVisor"
)


def clear_cache() -> None:
    """Forget cached probe results (tests, or after installing a backend)."""
    _probes.clear()
    _locks.clear()


async def probe_backend(name: str, workdir: Path) -> tuple[SandboxBackend | None, ProbeResult]:
    """Construct and probe backend ``name`` once per process; the backend is None if missing."""
    key = (name, workdir)
    if key in _probes:
        return _probes[key]
    lock = _locks.setdefault(asyncio.get_running_loop(), {}).setdefault(key, asyncio.Lock())
    async with lock:
        if key not in _probes:
            _probes[key] = await _probe(name, workdir)
    return _probes[key]


async def _probe(name: str, workdir: Path) -> tuple[SandboxBackend | None, ProbeResult]:
    try:
        backend = make_backend(name, workdir=workdir)
    except Exception as exc:  # not written yet, or its import/constructor failed
        return None, ProbeResult(name, False, f"not available: {exc}")
    try:
        await asyncio.to_thread(workdir.mkdir, mode=0o700, parents=True, exist_ok=True)
        result = await backend.probe()
    except Exception as exc:  # a probe must not take the runtime down
        result = ProbeResult(name, False, f"probe failed: {type(exc).__name__}: {exc}")
    return backend, result


async def probe_all(workdir: Path) -> list[ProbeResult]:
    """Every registered backend's probe result, strongest first (for ``agentrt doctor``)."""
    return [(await probe_backend(name, workdir))[1] for name in BACKENDS]


async def choose_backend(
    preference: str,
    *,
    allow_unsafe: bool,
    policy_needs_network_allowlist: bool,
    workdir: Path,
) -> SandboxBackend:
    """The backend to run model-written code with.

    Args:
        preference: ``auto`` (the first of ``AUTO_ORDER`` that works) or a backend name.
        allow_unsafe: permit the ``process`` backend, which isolates nothing.
        policy_needs_network_allowlist: the Tool's network is a host:port
            allow-list, so backends that support only "no network" are skipped.
        workdir: the directory backends keep their files in.

    Raises:
        UsageError: no acceptable backend works here; the message lists why
            each was rejected and how to allow the unsafe one.
    """
    if preference != "auto" and preference not in BACKENDS:
        raise UsageError(
            f"unknown sandbox {preference!r}; choose auto or one of {', '.join(BACKENDS)}"
        )
    names = list(AUTO_ORDER) if preference == "auto" else [preference]
    rejected: list[str] = []
    for name in names:
        if name == _UNSAFE and not allow_unsafe:
            rejected.append(f"{name}: refused for model-written code (no isolation)")
            continue
        backend, probe = await probe_backend(name, workdir)
        if backend is None or not probe.ok:
            rejected.append(f"{name}: {probe.detail}")
            continue
        if policy_needs_network_allowlist and not getattr(
            backend, "supports_network_allowlist", True
        ):
            rejected.append(f"{name}: supports only `network: none`, not a host:port allow-list")
            continue
        return backend
    hint = f"; {_ALLOW_UNSAFE_HINT}" if not allow_unsafe else ""
    raise UsageError(
        f"no usable sandbox for model-written code (sandbox: {preference}): "
        + "; ".join(rejected)
        + hint
    )
