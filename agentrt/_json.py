"""Fast JSON encoding for events and HTTP bodies (orjson), in one place."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "dumps_str", "loads"]

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Encode to compact UTF-8 JSON with sorted keys (stable across runs and replays)."""
    return orjson.dumps(value, option=_OPTS)


def dumps_str(value: Any) -> str:
    """Like :func:`dumps`, as a ``str``."""
    return orjson.dumps(value, option=_OPTS).decode()


def loads(data: bytes | str) -> Any:
    """Decode JSON."""
    return orjson.loads(data)
