"""``agentrt audit``: a tenant's audit log, listed by who, agent, run, kind and time, and
its hash chain verified.

``audit list`` shows the latest records that match (oldest of them first);
``audit verify`` checks every tenant's chain (or one's) and exits 1 naming the first
bad record of a broken one. Both only read the store.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from agentrt.cli._shared import EXIT_OK, EXIT_RUN_FAILED, print_json, with_store
from agentrt.observe.audit import AUDIT_KINDS, AuditRecord
from agentrt.state.audit import AuditVerdict, verify_audit

__all__ = ["add_parser", "parse_time"]

_AGE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_HELP: Final = (
    "a date (2026-01-31), a local time (2026-01-31T12:00), Unix seconds, or an age (15m, 2h, 7d)"
)
_SHOWN_BYTES: Final = 60


def parse_time(text: str, *, now: float | None = None) -> float:
    """A time given on the command line, as Unix seconds: an ISO 8601 date or time (local
    unless it names its offset), Unix seconds, or an age (``15m``: fifteen minutes ago)."""
    value = text.strip()
    age = _AGE.match(value)
    if age:
        return (time.time() if now is None else now) - float(age[1]) * _SECONDS[age[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give {_TIME_HELP}") from None


def add_parser(subparsers: Any) -> None:
    """Add the ``audit`` command and its subcommands to ``subparsers``."""
    parser = subparsers.add_parser("audit", help="a tenant's audit log: list it, verify it")
    parser.set_defaults(handler=_run)
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="the latest records that match every filter given")
    listing.add_argument("-n", "--namespace", default="default", help="the tenant")
    listing.add_argument("--principal", help="who did it (a key's key:NAME, a user)")
    listing.add_argument("--agent", help="the run's agent (or the Agent or Team changed)")
    listing.add_argument("--run", help="one run's records")
    listing.add_argument(
        "--kind",
        action="append",
        choices=list(AUDIT_KINDS),
        metavar="KIND",
        help=f"only this kind (repeatable): {', '.join(AUDIT_KINDS)}",
    )
    listing.add_argument("--since", type=parse_time, help=f"from this time: {_TIME_HELP}")
    listing.add_argument("--until", type=parse_time, help="before this time (same forms)")
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many")
    verify = sub.add_parser("verify", help="check the hash chain: exit 1 naming a bad record")
    verify.add_argument("-n", "--namespace", help="one tenant (default: every tenant)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


async def _run(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        if args.audit_command == "list":
            found = await store.list_audit(
                args.namespace, principal=args.principal, agent=args.agent, run_id=args.run,
                kinds=args.kind, since=args.since, until=args.until, newest_first=True,
                limit=args.limit,
            )  # fmt: skip
            records = found[::-1]
            if args.json:
                print_json([r.to_dict() for r in records])
            else:
                print(render_audit(records))
            return EXIT_OK
        namespaces = [args.namespace] if args.namespace else await store.audit_namespaces()
        verdicts = [await verify_audit(store, ns) for ns in namespaces]
    finally:
        await store.close()
    return _show_verdicts(verdicts, as_json=args.json)


def _show_verdicts(verdicts: Sequence[AuditVerdict], *, as_json: bool) -> int:
    if as_json:
        print_json([v.to_dict() for v in verdicts])
    elif not verdicts:
        print("no audit log in this store")
    for verdict in verdicts:
        if as_json:
            continue
        if verdict.ok:
            print(verdict.message())
        else:
            print(f"error: {verdict.message()}", file=sys.stderr)
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_RUN_FAILED


def render_audit(records: Sequence[AuditRecord]) -> str:
    """A table of audit records, in the order given."""
    if not records:
        return "no records"
    rows = [("SEQ", "TIME", "KIND", "WHO", "AGENT", "RUN", "WHAT")]
    for r in records:
        rows.append(
            (
                str(r.seq),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts)),
                r.kind,
                r.principal or "-",
                r.agent or "-",
                r.run_id or "-",
                _what(r.kind, r.body),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
        for row in rows
    )


def _what(kind: str, body: dict[str, Any]) -> str:
    """What a record says, in a few words."""
    step = f"step {body['step']}" if "step" in body else ""
    if kind == "run.submitted":
        return _shown(body.get("input"), body.get("input_sha256"))
    if kind in ("tool.call", "tool.refused"):
        attempt = f" (attempt {body['attempt']})" if "attempt" in body else ""
        what = f"{body.get('tool')} {step}{attempt}"
        return f"{what}: {body['reason']}" if "reason" in body else what
    if kind.startswith("tool."):
        said = body.get("reason") or body.get("action")
        return f"{step}: {said}" if said else step
    if kind.startswith("resource."):
        generation = f" (generation {body['generation']})" if "generation" in body else ""
        return f"{body.get('kind')}/{body.get('name')}{generation}"
    if "reason" in body:
        return str(body["reason"])
    return ", ".join(f"{k}={v}" for k, v in sorted(body.items()))[:_SHOWN_BYTES]


def _shown(text: Any, digest: Any) -> str:
    if not isinstance(text, str):
        return f"input sha256:{str(digest)[:12]}"
    one_line = " ".join(text.split())
    if len(one_line) > _SHOWN_BYTES:
        one_line = one_line[: _SHOWN_BYTES - 3] + "..."
    return repr(one_line)
