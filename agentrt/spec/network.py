"""Network allow-list entries of a Tool: ``host:port`` rules and how they match.

An entry is ``host:port`` where ``host`` is a DNS name, an IPv4 address, an
IPv6 address in brackets (``[::1]:8080``) or a wildcard ``*.example.com``
(any name *below* example.com, not example.com itself), and ``port`` is a
number from 1 to 65535. Names match case-insensitively and as written: an
entry for ``api.example.com`` does not allow the address it resolves to, so
a tool cannot reach a host by an address the operator did not list.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["NetworkRule", "allows", "parse_rule"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FIX = 'write "host:port", e.g. "api.example.com:443", "10.0.0.5:8080" or "*.example.com:443"'


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """One allowed destination: ``host`` (lower case, no brackets) and ``port``."""

    host: str
    port: int

    @property
    def wildcard(self) -> bool:
        """True for ``*.domain`` rules."""
        return self.host.startswith("*.")

    def matches(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` is allowed by this rule."""
        if port != self.port:
            return False
        host = host.lower().rstrip(".").strip("[]")
        if self.wildcard:
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _valid_name(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def parse_rule(entry: str) -> NetworkRule:
    """Parse one allow-list entry.

    Raises:
        ValueError: the entry is not ``host:port``; the message says how to write it.
    """
    text = entry.strip().lower()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{entry!r}: an IPv6 address needs brackets and a port; {_FIX}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{entry!r}: {host!r} is not an IPv6 address; {_FIX}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{entry!r} has no port; {_FIX}")
        name = host[2:] if host.startswith("*.") else host
        if ":" in host or not _valid_name(name):
            raise ValueError(f"{entry!r}: {host!r} is not a host name or address; {_FIX}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535; {_FIX}")
    return NetworkRule(host, int(port_text))


def allows(rules: tuple[NetworkRule, ...], host: str, port: int) -> bool:
    """Whether any of ``rules`` allows ``host:port``."""
    return any(rule.matches(host, port) for rule in rules)
