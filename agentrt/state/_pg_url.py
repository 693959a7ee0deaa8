"""The PostgreSQL store's URLs and connection parameters: agentrt's own options apart
from libpq's, what every connection is made with, and how a URL is shown (never
with its password).

``postgresql://user:secret@db.example:5432/agentrt?schema=agentrt&sslmode=require``:
``schema``, ``inline_limit``, ``pool_min_size`` and ``pool_max_size`` are the
store's; every other query option goes to libpq as given (``sslmode``,
``connect_timeout``, ``application_name``, ``options=-csearch_path=NAME``, ...).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agentrt.errors import UsageError

__all__ = ["SCHEMES", "check_schema_name", "connection_kwargs", "parse_url", "shown"]

SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")
"""The URL schemes that name the PostgreSQL store."""

_CONNECT_TIMEOUT_S: Final = 10  # libpq waits for an unreachable host forever without one
_SCHEMA: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INTS: Final = {
    "inline_limit": "inline_limit",
    "pool_min_size": "min_size",
    "pool_max_size": "max_size",
}


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a plain lower-case identifier (what ``?schema=`` takes).

    Raises:
        UsageError: It is not: quoting rules would make it another schema in
            ``search_path`` than in ``CREATE SCHEMA``.
    """
    if not _SCHEMA.match(schema):
        raise UsageError(
            f"schema name {schema!r} is not a plain identifier: use lower-case letters, "
            "digits and _ (at most 63), starting with a letter or _"
        )
    return schema


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into libpq's URL (agentrt's options removed, the scheme made
    ``postgresql``) and the keyword options of ``PostgresStore.open``.

    Raises:
        UsageError: The scheme is not PostgreSQL's, or an agentrt option is malformed.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise UsageError(f"not a PostgreSQL URL: {shown(url)}; expected postgresql://...")
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            options["schema"] = check_schema_name(value)
        elif key in _INTS:
            if not value.isdigit():
                raise UsageError(f"{key} must be a whole number in store URL {shown(url)}")
            options[_INTS[key]] = int(value)
        else:
            kept.append((key, value))
    libpq = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return libpq, options


def shown(conninfo: str) -> str:
    """``conninfo`` (a URL or ``key=value`` pairs) as it may be printed: no password."""
    if "://" in conninfo:
        parts = urlsplit(conninfo)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.partition(":")[0] + ":***"
            netloc = f"{user}@{host}"
        query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", conninfo)


def connection_kwargs(conninfo: str, schema: str | None) -> dict[str, Any]:
    """What each connection the store makes is made with, beside ``conninfo``:
    autocommit, a connect timeout and an application name unless ``conninfo`` has
    them, and ``schema`` first in the ``search_path``.

    Raises:
        UsageError: ``conninfo`` is not a valid connection string.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"bad PostgreSQL connection string {shown(conninfo)}: {exc}") from exc
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = _CONNECT_TIMEOUT_S
    if "application_name" not in given:
        kwargs["application_name"] = "agentrt"
    if schema is not None:
        options = str(given.get("options", ""))
        kwargs["options"] = f"{options} -c search_path={check_schema_name(schema)}".strip()
    return kwargs
