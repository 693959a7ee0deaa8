"""``agentrt memory``: a tenant's long-term memory: add, search, list and forget facts."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from agentrt import _json
from agentrt.errors import NotFoundError, UsageError
from agentrt.state import MemoryRecord, MemoryStore, NewMemory, open_store

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``memory`` command and its subcommands to ``subparsers``."""
    parser = subparsers.add_parser("memory", help="a tenant's long-term memory")
    parser.set_defaults(handler=run)
    sub = parser.add_subparsers(dest="memory_command", required=True, metavar="SUBCOMMAND")
    add = sub.add_parser("add", help="remember a fact")
    add.add_argument("text")
    add.add_argument("--tag", action="append", default=[], help="a label (repeatable)")
    search = sub.add_parser("search", help="facts matching any word of a query, best first")
    search.add_argument("query")
    search.add_argument("--tag", action="append", default=[], help="only facts with this tag")
    search.add_argument("--limit", type=int, default=5)
    listing = sub.add_parser("list", help="facts, newest first")
    listing.add_argument("--limit", type=int, default=50)
    forget = sub.add_parser("forget", help="delete a fact")
    forget.add_argument("id")
    for command in (add, search, listing, forget):
        command.add_argument("-n", "--namespace", default="default", help="the tenant")


async def run(args: argparse.Namespace) -> int:
    """Do one memory subcommand against the store."""
    store = await open_store(args.store, read_only=args.memory_command in ("search", "list"))
    try:
        if not isinstance(store, MemoryStore):
            raise UsageError(f"this store ({type(store).__name__}) keeps no long-term memory")
        return await _do(store, args)
    finally:
        await store.close()


async def _do(store: MemoryStore, args: argparse.Namespace) -> int:
    ns = args.namespace
    if args.memory_command == "add":
        record, _ = await store.remember(NewMemory(ns, args.text, tuple(args.tag)), now=time.time())
        _show([record], args.json)
    elif args.memory_command == "search":
        hits = await store.search_memory(ns, args.query, limit=args.limit, tags=args.tag)
        _show([h.record for h in hits], args.json, [h.score for h in hits])
    elif args.memory_command == "list":
        _show(await store.list_memory(ns, limit=args.limit), args.json)
    elif not await store.forget(ns, args.id):
        raise NotFoundError(f"no fact {args.id!r} in namespace {ns!r}; see `agentrt memory list`")
    elif args.json:
        print(_json.dumps_str({"forgotten": args.id}))
    else:
        print(f"forgot {args.id}")
    return 0


def _show(records: list[MemoryRecord], as_json: bool, scores: list[float] | None = None) -> None:
    if as_json:
        rows = [asdict(r) for r in records]
        for row, score in zip(rows, scores or [], strict=False):
            row["score"] = round(score, 4)
        print(_json.dumps_str(rows))
        return
    for record in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at))
        tags = f" [{', '.join(record.tags)}]" if record.tags else ""
        print(f"{record.id}  {when}{tags}  {record.text}")
    if not records:
        print("no facts")
