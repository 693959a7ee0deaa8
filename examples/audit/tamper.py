"""Edit one audit record of the store behind the runtime's back, as a tamperer with
write access to the database file would: ``python examples/audit/tamper.py SEQ``.

The store refuses changes to the audit table (a trigger); the tamperer drops it,
then rewrites the record's body. ``agentrt audit verify`` then names that record.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys


def main(seq: int) -> None:
    """Rewrite record ``seq`` of the SQLite store named by ``AGENTRT_STORE``."""
    db = sqlite3.connect(os.environ["AGENTRT_STORE"])
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    [(body,)] = db.execute("SELECT body FROM audit WHERE seq = ?", (seq,)).fetchall()
    edited = {**json.loads(body), "edited": "quietly"}
    db.execute("UPDATE audit SET body = ? WHERE seq = ?", (json.dumps(edited), seq))
    db.commit()
    print(f"rewrote audit record {seq}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
