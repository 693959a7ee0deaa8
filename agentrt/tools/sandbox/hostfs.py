"""What of the host's file system every sandbox sees: programs, libraries, a few of /etc.

One list for all backends, so that they agree on what model-written code can
read. ``/etc`` is an allow-list: only what a program needs to start and to
behave (dynamic linker cache, alternatives symlinks, time zone, CA
certificates). Not passwd, shadow, hosts, or the package managers' configs,
which may hold credentials. ``/etc/ssl/private`` is hidden inside ``/etc/ssl``.
"""

from __future__ import annotations

import os

__all__ = ["ETC_ENTRIES", "HIDDEN_DIRS", "SYSTEM_DIRS", "etc_entries"]

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
)
HIDDEN_DIRS = ("/etc/ssl/private",)  # inside an allowed entry; replaced by an empty dir


def etc_entries() -> list[str]:
    """The allowed ``/etc`` entries that exist on this host."""
    return [path for path in ETC_ENTRIES if os.path.lexists(path)]
