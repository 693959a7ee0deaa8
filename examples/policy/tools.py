"""Tools of the policy example: a refund desk whose calls its tenant's Policy decides.

``refund`` has an effect (a line in the ledger, once per idempotency key); the
Policy decides which refunds run, which wait for a person and which never run.
``read_file`` reads made-up files, never the disk: the Policy lets it read only
under ``/data/orders``, whatever ``..`` a path holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentrt import ToolContext

_FILES = {"/data/orders/1001.txt": "order 1001: blue kettle, 39.90 EUR, arrived broken"}


def _ledger() -> Path:
    return Path(os.environ.get("POLICY_DESK_LEDGER", "policy-desk-ledger.txt"))


def refund(order_id: str, amount: float, ctx: ToolContext) -> str:
    """Refund an amount (EUR) of an order (an external effect: once per key)."""
    with _ledger().open("a", encoding="utf-8") as ledger:
        ledger.write(f"{ctx.idempotency_key}\trefund\t{order_id}\t{amount:.2f}\n")
    return f"refunded {amount:.2f} EUR for order {order_id}"


def cancel_order(order_id: str) -> str:
    """Cancel an order (no rule of the desk's Policy allows it)."""
    return f"cancelled order {order_id}"


def read_file(path: str) -> str:
    """Read one of the desk's files (made up: nothing on the disk is read)."""
    if path not in _FILES:
        raise FileNotFoundError(path)
    return _FILES[path]
