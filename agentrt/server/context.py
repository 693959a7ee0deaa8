"""What every request handler of the server shares: the runtime, the limits the
operator set, what tenants may reach of the host, each key's request budget, and
the readers of the runs that streams follow."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentrt.engine import Runtime
from agentrt.server.event_tail import RunTails
from agentrt.server.problems import ApiError

__all__ = ["HostTrust", "RateLimiter", "ServerContext", "ServerLimits"]


@dataclass(frozen=True)
class ServerLimits:
    """The operator's limits on requests.

    Attributes:
        max_body_bytes: The largest request body accepted (413 above it).
        max_wait_s: The longest a request waits for a run (then it answers with
            the run as it is, 202).
        rate_per_s: Requests per second each key may make on average (429 above).
        burst: Requests a key may make at once after a quiet spell.
        heartbeat_s: Seconds between the keep-alive comments of an event stream
            (so that proxies keep a quiet one open).
        body_timeout_s: The longest wait for the next part of a request body (408
            past it).
    """

    max_body_bytes: int = 1 << 20
    max_wait_s: float = 300.0
    rate_per_s: float = 50.0
    burst: int = 100
    heartbeat_s: float = 15.0
    body_timeout_s: float = 30.0


@dataclass(frozen=True)
class HostTrust:
    """What resources applied over the API may reach of the server's host (see
    :mod:`agentrt.spec.host_access`): Python modules by prefix, programs by their
    first argument, environment variables and file paths by prefix. Empty: nothing."""

    modules: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def allows(self, kind: str, value: str) -> bool:
        """Whether a reach of ``kind`` naming ``value`` is allowed."""
        if kind == "module":
            return any(value == m or value.startswith(f"{m}.") for m in self.modules)
        if kind == "command":
            return value in self.commands
        if kind == "env":
            return value in self.env
        return any(value == p or value.startswith(p.rstrip("/") + "/") for p in self.paths)


@dataclass
class RateLimiter:
    """A token bucket per key, in this replica: ``rate_per_s`` on average, ``burst`` at once."""

    rate_per_s: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, key: str) -> None:
        """Take one request from ``key``'s bucket; a 429 with ``Retry-After`` if empty."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self.rate_per_s
            self._buckets[key] = (tokens, now)
            raise ApiError(
                429,
                f"too many requests with this key: at most {self.rate_per_s:g} a second",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        self._buckets[key] = (tokens - 1.0, now)


@dataclass
class ServerContext:
    """The server's parts, made by :func:`~agentrt.server.app.create_app`."""

    runtime: Runtime
    limits: ServerLimits
    trust: HostTrust
    limiter: RateLimiter
    tails: RunTails  # one reader of each streamed run's log, shared by its streams
