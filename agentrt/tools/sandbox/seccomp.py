"""The seccomp filter of the bubblewrap backend: the kernel surface agent code never needs.

Model-written code runs on the host's kernel under bubblewrap, so every system
call it makes reaches that kernel. The filter below denies the calls that an
agent's code (Python, a shell, the programs in ``/usr``) has no use for and
that are the usual way from a sandbox into the kernel: they fail with
``EPERM``, which programs report as "operation not permitted", so the model
sees an ordinary error and the run goes on. Everything else is allowed.

The list, by what it protects (``DENIED`` holds it as data, and ``agentrt
doctor`` prints its size):

- kernel keyrings (``add_key``, ``keyctl``, ``request_key``): a sandbox inherits
  possession of its parent's session keyring;
- new namespaces and mounts (``unshare`` and ``clone`` with a namespace flag,
  ``setns``, ``mount`` and the new mount API, ``pivot_root``, ``chroot``): a new
  user namespace grants every capability over the namespaces it then creates,
  the route to mounting cgroupfs and raising one's own limits; ``clone3`` fails
  with ``ENOSYS`` instead, because its flags sit in memory a filter cannot read,
  and libc then falls back to ``clone``, whose flags it can;
- large, often-exploited kernel subsystems: ``io_uring_*``, ``bpf``,
  ``perf_event_open``, ``userfaultfd``;
- other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``kcmp``,
  ``pidfd_getfd``;
- the machine: modules, ``kexec_*``, ``reboot``, swap, clocks, ``acct``,
  ``quotactl``, ``syslog``, ``iopl``/``ioperm``, ``open_by_handle_at``,
  ``name_to_handle_at``, ``lookup_dcookie``, ``fanotify_init``, NUMA page moves;
- terminals: the ``TIOCSTI`` and ``TIOCLINUX`` ioctls (typing into a terminal).

System calls of another architecture (the 32-bit ABI on x86-64, for instance)
kill the process: the filter is written for the native one only.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

__all__ = ["CLONE3", "DENIED", "NAMESPACE_FLAGS", "SeccompUnavailable", "compile_filter"]

DENIED: tuple[str, ...] = (
    # keyrings
    "add_key", "keyctl", "request_key",
    # namespaces and mounts
    "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # large kernel subsystems
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
    "userfaultfd",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # the machine
    "init_module", "finit_module", "delete_module", "create_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "syslog", "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "fanotify_init", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "move_pages", "migrate_pages", "nfsservctl", "vhangup", "uselib", "_sysctl", "ustat",
    "sysfs", "get_kernel_syms", "query_module", "vm86", "vm86old",
)  # fmt: skip
# clone/unshare flags that make a new namespace.
NAMESPACE_FLAGS: tuple[int, ...] = (
    0x10000000,  # CLONE_NEWUSER
    0x00020000,  # CLONE_NEWNS
    0x40000000,  # CLONE_NEWNET
    0x20000000,  # CLONE_NEWPID
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x02000000,  # CLONE_NEWCGROUP
    0x00000080,  # CLONE_NEWTIME
)
CLONE3 = "clone3"
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_EPERM, _ENOSYS = 1, 38


class SeccompUnavailable(Exception):
    """libseccomp (or its Python binding) is missing; the message says what to install."""


def _library() -> Any:
    try:
        import pyseccomp  # type: ignore[import-untyped]
    except ImportError as exc:
        raise SeccompUnavailable(
            f"the seccomp binding is missing ({exc}): pip install pyseccomp"
        ) from None
    except RuntimeError as exc:  # the binding imports, but libseccomp.so.2 is not there
        raise SeccompUnavailable(f"{exc}: install Debian's libseccomp2") from None
    return pyseccomp


def compile_filter() -> bytes:
    """The filter as a classic BPF program, the form ``bwrap --seccomp FD`` reads.

    Raises:
        SeccompUnavailable: libseccomp or its binding is not installed.
    """
    sc = _library()
    deny = sc.ERRNO(_EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)
    # Another architecture's system calls are not described by this filter.
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    native = sc.system_arch()
    for name in DENIED:
        if _resolves(sc, native, name):
            flt.add_rule(deny, name)
    for flag in NAMESPACE_FLAGS:
        flt.add_rule(deny, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        flt.add_rule(deny, "clone", sc.Arg(_clone_flags_arg(), sc.MASKED_EQ, flag, flag))
    if _resolves(sc, native, CLONE3):
        flt.add_rule(sc.ERRNO(_ENOSYS), CLONE3)
    for request in (_TIOCSTI, _TIOCLINUX):
        flt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def _resolves(sc: Any, arch: int, name: str) -> bool:
    try:
        return int(sc.resolve_syscall(arch, name)) >= 0
    except (OSError, ValueError):
        return False


def _clone_flags_arg() -> int:
    # s390 passes clone's flags second; every other architecture first.
    return 1 if os.uname().machine.startswith("s390") else 0
