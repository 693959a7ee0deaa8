"""Settings of a runtime and its command line, and the one place that reads the environment.

:meth:`Settings.from_env` reads every environment variable agentrt uses; the
rest of the package receives a :class:`Settings` (a Runtime builds one, the
command line builds one at start) and hands each part what it needs: a model
client its API key and proxies, an HTTP tool its ``${env:NAME}`` secrets, an
MCP server its ``mcp.env`` references, a code tool its ``permissions.env`` and
sandbox directory. Nothing below reads ``os.environ`` itself, so a Runtime
given ``Settings(environ={...})`` sees exactly that environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from agentrt.errors import UsageError

__all__ = ["Settings", "default_sandbox_dir"]


def default_sandbox_dir() -> Path:
    """Where sandbox backends keep their files unless told: the user cache directory."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentrt")) / "sandboxes"


def _frozen(environ: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(environ))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What a runtime and the ``agentrt`` command are configured with (derive with ``replace``).

    Attributes:
        environ: The environment variables as they were read: where a Model's
            ``api_key_env``, an HTTP tool's ``${env:NAME}`` secrets, an MCP
            server's ``${env:NAME}`` references, a code Tool's
            ``permissions.env`` and the proxy variables (``HTTP_PROXY``,
            ``HTTPS_PROXY``, ``NO_PROXY``) are looked up. Read-only.
        sandbox_dir: Where sandbox backends keep their files
            (``AGENTRT_SANDBOX_DIR``).
        store: The store URL or SQLite file of the command line (``AGENTRT_STORE``).
        server: The agentrt server the command line talks to instead of a
            store (``AGENTRT_SERVER``, an ``http(s)://`` URL).
        api_key: The API key it sends that server (``AGENTRT_API_KEY``).
        scratch_dir: Where runs' scratch directories live, if not beside the
            store (``AGENTRT_SCRATCH``).
        lease_ttl_s: How long a run's lease lasts unrenewed (``AGENTRT_LEASE_TTL``).
        retention: The default ``--older-than`` of ``agentrt gc``
            (``AGENTRT_RETENTION``).
        user: Who a person's decision is recorded as (``USER``).
        no_color: Plain output, no ANSI colours (``NO_COLOR``).
    """

    environ: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    sandbox_dir: Path = field(default_factory=default_sandbox_dir)
    store: str | None = None
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)
    scratch_dir: Path | None = None
    lease_ttl_s: float = 30.0
    retention: str = "30d"
    user: str | None = None
    no_color: bool = False

    def __post_init__(self) -> None:
        # A caller's dict is copied, so changing it later does not change us.
        if not isinstance(self.environ, MappingProxyType):
            object.__setattr__(self, "environ", _frozen(self.environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings read from ``environ`` (by default the process environment, now).

        Raises:
            UsageError: A variable holds a value agentrt cannot use (the
                message names it and says what to write).
        """
        env = _frozen(os.environ if environ is None else environ)
        sandbox = env.get("AGENTRT_SANDBOX_DIR")
        scratch = env.get("AGENTRT_SCRATCH")
        return cls(
            environ=env,
            sandbox_dir=Path(sandbox) if sandbox else default_sandbox_dir(),
            store=env.get("AGENTRT_STORE") or None,
            server=_server(env.get("AGENTRT_SERVER") or None),
            api_key=env.get("AGENTRT_API_KEY") or None,
            scratch_dir=Path(scratch) if scratch else None,
            lease_ttl_s=_lease_ttl(env.get("AGENTRT_LEASE_TTL", "30")),
            retention=env.get("AGENTRT_RETENTION") or "30d",
            user=env.get("USER") or None,
            no_color="NO_COLOR" in env,
        )


def _lease_ttl(raw: str) -> float:
    try:
        ttl = float(raw)
    except ValueError:
        raise UsageError(f"AGENTRT_LEASE_TTL={raw!r}: give a number of seconds") from None
    if not ttl > 0:  # also refuses nan
        raise UsageError(f"AGENTRT_LEASE_TTL={raw!r}: must be more than 0")
    return ttl


def _server(raw: str | None) -> str | None:
    if raw is not None and not raw.startswith(("http://", "https://")):
        raise UsageError(
            f"AGENTRT_SERVER={raw!r}: give the server's URL, e.g. http://127.0.0.1:8080"
        )
    return raw
