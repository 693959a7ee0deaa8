"""The baselines: a hand-written agent loop on raw aiohttp, with and without a SQLite log.

This is the least work an agent loop can do: encode the conversation, POST it,
decode the reply, call the tool, repeat. With a database path it also writes
one row per message to a minimal SQLite log (WAL, ``synchronous=NORMAL``, one
commit per row), on the event loop's thread.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from bench.common import INSTRUCTIONS, MODEL_NAME, TOOL_DEFS, add

__all__ = ["BareLoop"]

_TOOLS = {"add": add}
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_MAX_TURNS = 50


class BareLoop:
    """A bare agent loop; with ``db_path``, logs every message to SQLite.

    Args:
        url: The model server's base URL (``http://HOST:PORT/v1``).
        db_path: Where to keep the message log; ``None`` for no persistence.
    """

    def __init__(self, url: str, db_path: Path | None = None) -> None:
        self._url = f"{url}/chat/completions"
        self.db_path = db_path
        self._http: aiohttp.ClientSession | None = None
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> BareLoop:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        )
        if self.db_path is not None:
            db = sqlite3.connect(self.db_path, isolation_level=None)  # autocommit: 1 row, 1 txn
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS messages (run TEXT NOT NULL, seq INTEGER NOT NULL, "
                "role TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (run, seq)) WITHOUT ROWID"
            )
            self._db = db
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._db is not None:
            self._db.close()

    def _log(self, run: str, seq: int, message: dict[str, Any]) -> None:
        if self._db is not None:
            self._db.execute(
                "INSERT INTO messages (run, seq, role, body) VALUES (?, ?, ?, ?)",
                (run, seq, message["role"], orjson.dumps(message)),
            )

    async def run(self, text: str) -> str:
        """Run one query to its final answer and return it."""
        assert self._http is not None
        run = secrets.token_hex(8)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": text},
        ]
        self._log(run, 1, messages[1])
        for _ in range(_MAX_TURNS):
            body = orjson.dumps({"model": MODEL_NAME, "messages": messages, "tools": TOOL_DEFS})
            async with self._http.post(self._url, data=body, headers=_HEADERS) as resp:
                resp.raise_for_status()
                reply = orjson.loads(await resp.read())
            message = reply["choices"][0]["message"]
            messages.append(message)
            self._log(run, len(messages) - 1, message)
            calls = message.get("tool_calls")
            if not calls:
                return str(message.get("content") or "")
            for call in calls:
                function = call["function"]
                output = _TOOLS[function["name"]](**orjson.loads(function["arguments"]))
                result = {"role": "tool", "tool_call_id": call["id"], "content": str(output)}
                messages.append(result)
                self._log(run, len(messages) - 1, result)
        raise RuntimeError(f"no final answer after {_MAX_TURNS} turns")
