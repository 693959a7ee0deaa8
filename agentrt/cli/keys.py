"""The ``agentrt keys`` command: make, list and revoke the API keys of the server.

A key is shown once, when it is made; the store keeps only its hash. Run it
where the store is (``--store``), as the operator.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agentrt.cli._shared import EXIT_OK, print_json, settings_of, with_store
from agentrt.server.keys import ROLES, create_key, list_keys, revoke_key

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``agentrt keys create|list|revoke``."""
    k = sub.add_parser("keys", help="API keys of the server: create, list, revoke")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = ks.add_parser("create", help="make a key (shown once)")
    c.add_argument("--tenant", required=True, help="the namespace the key acts in")
    c.add_argument("--role", required=True, choices=ROLES, help="what the key may do")
    c.add_argument("--name", help="how lists and run events show the key")
    c.set_defaults(handler=_cmd_create)
    ls = ks.add_parser("list", help="the keys made, revoked ones too")
    ls.add_argument("--tenant", help="only this tenant's")
    ls.set_defaults(handler=_cmd_list)
    r = ks.add_parser("revoke", help="refuse a key from now on")
    r.add_argument("key_id", metavar="ID", help="the key's id (from `agentrt keys list`)")
    r.set_defaults(handler=_cmd_revoke)


async def _cmd_create(args: argparse.Namespace) -> int:
    store = await with_store(args)
    try:
        key, secret = await create_key(
            store, tenant=args.tenant, role=args.role, name=args.name, now=time.time(),
            by=settings_of(args).user,
        )  # fmt: skip
    finally:
        await store.close()
    if args.json:
        print_json({**key.to_dict(), "key": secret})
    else:
        print(secret)
        print(f"key {key.id} ({key.name}): {key.role} of tenant {key.tenant}; "
              "shown only now: keep it", flush=True)  # fmt: skip
    return EXIT_OK


async def _cmd_list(args: argparse.Namespace) -> int:
    store = await with_store(args, read_only=True)
    try:
        keys = await list_keys(store, tenant=args.tenant)
    finally:
        await store.close()
    if args.json:
        print_json([k.to_dict() for k in keys])
        return EXIT_OK
    if not keys:
        print("no API keys (make one with `agentrt keys create --tenant T --role R`)")
        return EXIT_OK
    print(f"{'ID':<16}  {'NAME':<20} {'TENANT':<20} {'ROLE':<8} STATE")
    for k in keys:
        state = "active" if k.revoked_at is None else "revoked"
        print(f"{k.id:<16}  {k.name[:20]:<20} {k.tenant[:20]:<20} {k.role:<8} {state}")
    return EXIT_OK


async def _cmd_revoke(args: argparse.Namespace) -> int:
    store = await with_store(args)
    try:
        key = await revoke_key(store, args.key_id, now=time.time(), by=settings_of(args).user)
    finally:
        await store.close()
    print_json(key.to_dict()) if args.json else print(f"key {key.id} ({key.name}) revoked")
    return EXIT_OK
