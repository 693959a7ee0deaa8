"""The SQLite store's URLs and its default file."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import platformdirs

from agentrt.errors import UsageError
from agentrt.state._sqlite_schema import MEMORY

__all__ = ["default_store_path", "parse_url"]


def default_store_path() -> Path:
    """The database used when no store URL is configured.

    Returns:
        ``agentrt.db`` in the user's data directory for agentrt (per-OS, via
        ``platformdirs``).
    """
    return Path(platformdirs.user_data_dir("agentrt")) / "agentrt.db"


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split ``sqlite:///abs/path.db?durability=full`` into a path and open() options."""
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise UsageError(f"not a SQLite URL: {url!r}; expected sqlite:///absolute/path.db")
    rest, _, query = url[len(prefix) :].partition("?")
    if rest in ("", "/:memory:"):
        path = MEMORY
    elif rest.startswith("/"):
        path = unquote(rest)
        if len(path) > 2 and path[2] == ":" and path[1].isalpha():
            path = path[1:]  # sqlite:///C:/dir/x.db on Windows
    else:
        raise UsageError(f"bad SQLite URL {url!r}: use sqlite:///absolute/path.db (three slashes)")
    kwargs: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "durability":
            kwargs["durability"] = value
        elif key == "inline_limit" and value.isdigit():
            kwargs["inline_limit"] = int(value)
        else:
            raise UsageError(
                f"unknown option {key}={value!r} in store URL {url!r}; "
                "known: durability=normal|full, inline_limit=<bytes>"
            )
    return path, kwargs
