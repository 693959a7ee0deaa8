"""``agentrt circuits``: the circuit breaker of each model endpoint of a tenant, as the
store keeps it for every worker: closed, open (and until when), or half open while
one probe call is let through."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from agentrt._text import count
from agentrt.cli._shared import EXIT_OK, print_json, with_store
from agentrt.state.circuits import Circuit

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``agentrt circuits`` to the command line's subcommands."""
    c = sub.add_parser(
        "circuits", help="each model endpoint's circuit breaker: closed, open, or probed"
    )
    c.add_argument("-n", "--namespace", default="default", help="the tenant (default)")
    c.set_defaults(handler=_cmd_circuits)


def _parts(circuit: Circuit) -> tuple[str, str]:
    """The Model and the endpoint of a circuit's key (``NS/MODEL@BASE_URL``)."""
    model, _, endpoint = circuit.key.removeprefix(f"{circuit.namespace}/").partition("@")
    return model, endpoint


def _as_dict(circuit: Circuit) -> dict[str, Any]:
    model, endpoint = _parts(circuit)
    fields = dataclasses.asdict(circuit)
    for name in ("key", "namespace", "version"):
        fields.pop(name)
    return {"model": model, "endpoint": endpoint, **fields}


def _now_line(circuit: Circuit, now: float) -> str:
    """What the circuit does to calls now, in words."""
    failures = count(circuit.failures, "failed call")
    if circuit.state == "closed":
        return f"calls go through ({failures} in a row)" if circuit.failures else "calls go through"
    if circuit.state == "open":
        wait = circuit.open_until - now
        probe = f"a probe in {wait:.0f}s" if wait > 0 else "the next call probes it"
        return f"skipped after {failures} in a row; {probe}"
    return f"one call probes it (claimed for {max(0.0, circuit.probe_until - now):.0f}s more)"


async def _cmd_circuits(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        circuits = await store.list_circuits(args.namespace)
    finally:
        await store.close()
    if args.json:
        print_json([_as_dict(c) for c in circuits])
        return EXIT_OK
    if not circuits:
        print(f"no model endpoint of namespace {args.namespace!r} has failed yet")
        return EXIT_OK
    now = time.time()
    print(f"{'MODEL':<20} {'STATE':<10} {'OPENED':<7} {'ENDPOINT':<32} NOW")
    for c in circuits:
        model, endpoint = _parts(c)
        line = f"{model[:20]:<20} {c.state:<10} {c.opened:<7} {endpoint[:32]:<32}"
        print(f"{line} {_now_line(c, now)}")
    return EXIT_OK
