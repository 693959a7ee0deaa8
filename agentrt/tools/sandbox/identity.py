"""Who sandboxed code runs as: never the host's root.

When the runtime runs as an ordinary user, sandboxes run as that user (inside
and out: bubblewrap maps the same uid). When it runs as root, as it often does
in containers and CI, sandboxes run as a dedicated unprivileged uid and gid
instead, so that nothing the kernel grants to uid 0 (writing sysctls, owning
cgroup files, root's keyrings, files owned by root) is within their reach.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SANDBOX_UID", "SandboxUser", "sandbox_user"]

# Debian reserves 65000-65533 for local, system-wide use; this one is agentrt's.
SANDBOX_UID = 65_000


@dataclass(frozen=True, slots=True)
class SandboxUser:
    """The host uid and gid sandboxed code runs as (the same numbers inside the sandbox)."""

    uid: int
    gid: int

    @property
    def is_runtime(self) -> bool:
        """True when this is the runtime's own user (it runs unprivileged)."""
        return (self.uid, self.gid) == (os.geteuid(), os.getegid())

    def give(self, directory: Path) -> None:
        """Make ``directory`` (not its content) this user's, so that it may write there.

        Blocking: call it in a thread.
        """
        if not self.is_runtime:
            os.chown(directory, self.uid, self.gid, follow_symlinks=False)


def sandbox_user(uid: int = SANDBOX_UID) -> SandboxUser:
    """The runtime's own user, or ``uid`` (and a gid of the same number) when it is root."""
    if os.geteuid() != 0:
        return SandboxUser(os.geteuid(), os.getegid())
    if uid == 0:
        raise ValueError("sandboxed code never runs as uid 0")
    return SandboxUser(uid, uid)
