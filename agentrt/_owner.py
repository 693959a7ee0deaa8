"""Owner ids (``host:pid:nonce``), and whether the process an owner names is still alive.

Below every layer: the engine names the owner of a run's lease with one, and the
sandbox backends the owner of what they leave on disk, so both judge a dead
owner the same way.
"""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["is_local_owner", "new_owner_id", "owner_is_dead"]


def new_owner_id() -> str:
    """``host:pid:nonce`` for this process; unique per Runtime instance."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_local_owner(owner: str | None) -> bool:
    """True if ``owner`` names another process on this host (whose death
    :func:`owner_is_dead` can tell without waiting for its lease to expire)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return host == socket.gethostname() and pid_text.isdigit() and int(pid_text) != os.getpid()


def owner_is_dead(owner: str | None) -> bool:
    """True if ``owner`` was a process on this host that no longer exists.

    An owner on another host is never judged dead here: its lease must expire.
    """
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child not yet reaped by its parent still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
