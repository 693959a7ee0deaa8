"""Which sandbox backend runs model-written code here: the first of ``AUTO_ORDER`` that works.

Backends come from the registry (see :data:`~.registry.AUTO_ORDER` for why
bubblewrap comes first). Probing is a real self-test that starts sandboxes, so
a Runtime probes each backend once (:class:`~.sandboxes.Sandboxes` keeps the
results) and passes its cached probe here. A backend
whose module is not installed yet, or that cannot be constructed, counts as
unavailable with the reason. ``process`` isolates nothing, so it is chosen for
model-written code only when the Tool says ``allow_unsafe: true``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from agentrt.errors import UsageError
from agentrt.tools.sandbox.base import ProbeResult, SandboxBackend
from agentrt.tools.sandbox.registry import AUTO_ORDER, BACKENDS, make_backend

__all__ = ["Probe", "choose_backend", "probe_all", "probe_backend"]

_UNSAFE = "process"

Probe = Callable[[str], Awaitable[tuple[SandboxBackend | None, ProbeResult]]]
"""Constructs and probes the backend of a name: ``(backend or None if missing, result)``."""

_ALLOW_UNSAFE_HINT = (
    "to run it without isolation anyway, set `code: {allow_unsafe: true}` in the Tool "
    "spec (only for code you trust); to isolate it, install bubblewrap (and give the "
    "runtime writable cgroups) or gVisor"
)


async def probe_backend(name: str, workdir: Path) -> tuple[SandboxBackend | None, ProbeResult]:
    """Construct and probe backend ``name`` now; the backend is None if it is missing."""
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


async def probe_all(probe: Probe) -> list[ProbeResult]:
    """Every registered backend's probe result, strongest first (for ``agentrt doctor``)."""
    return [(await probe(name))[1] for name in BACKENDS]


async def choose_backend(
    preference: str,
    *,
    allow_unsafe: bool,
    policy_needs_network_allowlist: bool,
    workdir: Path | None = None,
    probe: Probe | None = None,
) -> SandboxBackend:
    """The backend to run model-written code with.

    Args:
        preference: ``auto`` (the first of ``AUTO_ORDER`` that works) or a backend name.
        allow_unsafe: permit the ``process`` backend, which isolates nothing.
        policy_needs_network_allowlist: the Tool's network is a host:port
            allow-list, so backends that support only "no network" are skipped.
        workdir: the directory backends keep their files in (to probe them now).
        probe: how a backend is probed instead, e.g. a Runtime's cached probes
            (:meth:`~.sandboxes.Sandboxes.probe`); one of ``workdir`` or ``probe``.

    Raises:
        UsageError: no acceptable backend works here; the message lists why
            each was rejected and how to allow the unsafe one.
    """
    if preference != "auto" and preference not in BACKENDS:
        raise UsageError(
            f"unknown sandbox {preference!r}; choose auto or one of {', '.join(BACKENDS)}"
        )
    if probe is None:
        if workdir is None:
            raise TypeError("choose_backend needs a workdir or a probe")
        probe = functools.partial(probe_backend, workdir=workdir)
    names = list(AUTO_ORDER) if preference == "auto" else [preference]
    rejected: list[str] = []
    for name in names:
        if name == _UNSAFE and not allow_unsafe:
            rejected.append(f"{name}: refused for model-written code (no isolation)")
            continue
        backend, result = await probe(name)
        if backend is None or not result.ok:
            rejected.append(f"{name}: {result.detail}")
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
