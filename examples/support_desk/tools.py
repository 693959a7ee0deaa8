"""Tools of the support-desk example: one of them has an external effect.

``refund`` is not idempotent: a refund issued twice costs money. It records
each refund under the idempotency key the runtime gives it, and ``find_refund``
lets the runtime ask, after a crash, whether the refund already happened.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentrt import ToolContext

_ORDERS = {"1001": ("blue kettle", 39.90), "1002": ("desk lamp", 24.50)}


def _ledger() -> Path:
    return Path(os.environ.get("SUPPORT_DESK_LEDGER", "support-desk-ledger.txt"))


def order_status(order_id: str) -> str:
    """Look up an order by id."""
    if order_id not in _ORDERS:
        raise KeyError(f"no order {order_id}")
    item, price = _ORDERS[order_id]
    return f"order {order_id}: {item}, {price:.2f} EUR, delivered damaged"


def refund(order_id: str, ctx: ToolContext) -> str:
    """Refund an order in full (an external effect: happens once per key)."""
    _, price = _ORDERS[order_id]
    with _ledger().open("a", encoding="utf-8") as ledger:
        ledger.write(f"{ctx.idempotency_key}\trefund\t{order_id}\t{price:.2f}\n")
    return f"refunded {price:.2f} EUR for order {order_id}"


def find_refund(ctx: ToolContext) -> str | None:
    """After a crash: did the refund with this key happen? (the ledger knows)."""
    path = _ledger()
    for line in path.read_text().splitlines() if path.exists() else []:
        key, _, order_id, amount = line.split("\t")
        if key == ctx.idempotency_key:
            return f"refunded {amount} EUR for order {order_id}"
    return None
