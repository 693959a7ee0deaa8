"""Which HTTP proxy a request goes through, by the standard environment variables.

``HTTP_PROXY`` for ``http://`` URLs and ``HTTPS_PROXY`` for ``https://`` ones
(the lower-case names win when both are set, as with curl); no proxy for a host
that ``NO_PROXY`` lists: comma-separated entries, where ``example.com`` and
``.example.com`` also cover its subdomains, ``host:port`` (``[::1]:8000``) one
port only, ``10.0.0.0/8`` the addresses of a network, and ``*`` every host. A
proxy given without a scheme is ``http://``.

The environment is passed in and read where a client is built, once, not on
every request (aiohttp's ``trust_env`` would read it, and ``~/.netrc``, in a
thread on every request, and a netrc entry for a model's host would clash with
its ``Authorization`` header).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["proxy_for"]


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for requests to ``url``, or ``None`` to connect directly."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None
    proxy = _variable(environ, f"{scheme}_proxy")
    if not proxy:
        return None
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    no_proxy = _variable(environ, "no_proxy") or ""
    if any(_covers(entry, host, port) for entry in no_proxy.split(",")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _covers(entry: str, host: str, port: int) -> bool:
    """Whether one ``NO_PROXY`` entry covers ``host:port``."""
    entry = entry.strip().lower()
    if not entry or not host:
        return False
    if entry == "*":
        return True
    name, want = entry, ""
    if entry.startswith("["):  # [v6]:port
        name, _, rest = entry[1:].partition("]")
        want = rest.removeprefix(":")
    elif entry.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
        name, _, want = entry.partition(":")
    if want and want != str(port):
        return False
    if "/" in name:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False)
        except ValueError:
            return False
    name = name.lstrip(".")
    return host == name or host.endswith("." + name)


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    return (environ.get(name) or environ.get(name.upper()) or "").strip() or None
