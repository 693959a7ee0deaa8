"""The ``agentrt`` command.

Exit codes: 0 success; 1 the run ended other than ``succeeded`` (or ``audit verify``
found a broken audit log); 2 a usage error (bad spec, flag, unknown run); 3 the run
waits for a person; 4 the store cannot be opened or written here (its path,
permissions, read-only media, a lock), or the server of ``--server`` does not
answer; 5 the file is not a store this agentrt can use (not one, damaged, another
schema version); 6 no space left for the store; 130 interrupted; 141 the output's
reader went away (``agentrt runs list | head``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentrt._version import __version__
from agentrt.cli import (
    audit,
    budgets,
    cache,
    circuits,
    decisions,
    doctor,
    keys,
    long_term_memory,
    remote,
    resources,
    runs,
    serve,
    worker,
)
from agentrt.cli._shared import (
    EXIT_INTERRUPTED,
    EXIT_OUTPUT_CLOSED,
    EXIT_RUN_FAILED,
    EXIT_STORE_FULL,
    EXIT_STORE_INVALID,
    EXIT_STORE_UNAVAILABLE,
    EXIT_USAGE,
    OUTPUT_CLOSED,
)
from agentrt.errors import (
    AgentrtError,
    BudgetExhausted,
    SpecError,
    StoreError,
    StoreFull,
    StoreInvalid,
    UsageError,
)
from agentrt.settings import Settings

__all__ = ["CommandParser", "build_parser", "main"]


class CommandParser(argparse.ArgumentParser):
    """A parser whose commands, at every depth, take the global flags before or after them.

    ``add_subparsers`` builds each command's parser of its parent's class, so
    ``agentrt graph show X --json`` and ``agentrt memory list --store S`` work
    like ``agentrt --json graph show X``, with no command left out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a command's parser sets a flag only when it is given there,
        # so it never resets one given before the command (the root sets defaults).
        self.add_argument(
            "--store",
            default=argparse.SUPPRESS,
            help="store URL or SQLite file (default: $AGENTRT_STORE or the user data dir)",
        )
        self.add_argument(
            "--server",
            default=argparse.SUPPRESS,
            metavar="URL",
            help="talk to this agentrt server instead of a store, with the key in "
            "$AGENTRT_API_KEY (default: $AGENTRT_SERVER)",
        )
        self.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``agentrt`` command."""
    p = CommandParser(prog="agentrt", description="Run AI agents as durable, governable workloads.")
    # The store's default comes from the settings, read once the command line parsed
    # (so that --help and --version work whatever the environment holds).
    p.set_defaults(store=None, server=None, json=False)
    p.add_argument("--version", action="version", version=f"agentrt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `agentrt --help` lists them; each command's parser names its handler.
    runs.add_demo_parser(sub)
    resources.add_parsers(sub)
    runs.add_parsers(sub)
    worker.add_parser(sub)
    serve.add_parser(sub)
    keys.add_parser(sub)
    budgets.add_parser(sub)
    circuits.add_parser(sub)
    cache.add_parser(sub)
    decisions.add_parsers(sub)
    doctor.add_parser(sub)
    long_term_memory.add_parser(sub)
    audit.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentrt`` console script."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Whoever read the output is gone (`agentrt runs list | head`): stop quietly,
        # as a command the shell sees end by SIGPIPE does; a run stays resumable.
        # Standard output goes to /dev/null so the interpreter's last flush cannot fail.
        _discard_stdout()
        return EXIT_OUTPUT_CLOSED


def _discard_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (a caller's in-memory stream)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # `module:function` references in specs resolve from the working directory,
    # as `python -m` would (the console script's own directory is not useful).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _log_in_one_line()
    try:
        _read_settings(args)
        return asyncio.run(_dispatch(args))
    except asyncio.CancelledError as exc:
        if OUTPUT_CLOSED not in exc.args:
            raise
        raise BrokenPipeError from None  # the live trace's reader went away
    except KeyboardInterrupt:
        print("interrupted; the run stays resumable", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _store_exit(exc)
    except BudgetExhausted as exc:  # a query its tenant's Budgets have no room for
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except AgentrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


class _OneLine(logging.Formatter):
    """A runtime's log record as one line: a command prints no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"agentrt: {record.getMessage()}"


def _log_in_one_line() -> None:
    """Show the runtime's warnings on stderr, one line each, unless logging is set up."""
    logger = logging.getLogger("agentrt")
    if logging.getLogger().handlers or logger.handlers:
        return  # the embedding program (or a test) decides
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine())
    logger.addHandler(handler)


def _store_exit(exc: StoreError) -> int:
    if isinstance(exc, StoreFull):
        return EXIT_STORE_FULL
    return EXIT_STORE_INVALID if isinstance(exc, StoreInvalid) else EXIT_STORE_UNAVAILABLE


def _read_settings(args: argparse.Namespace) -> None:
    """Read the environment, the one time a command does: ``args.settings``."""
    settings = Settings.from_env()
    args.settings = settings
    if args.server is not None and args.store is not None:
        raise UsageError("give --store or --server, not both")
    if args.server is None and args.store is None:
        args.server = settings.server  # a --store given beats $AGENTRT_SERVER
    if args.server is not None and not args.server.startswith(("http://", "https://")):
        raise UsageError(f"--server {args.server!r}: give the server's URL, e.g. http://HOST:8080")
    if args.command in _LOCAL_ONLY:
        args.server = None  # these serve or probe this host, whatever the server setting
    if args.store is None:
        args.store = settings.store


# Commands that are about this host (serving a store, its sandboxes), never a server's.
_LOCAL_ONLY = frozenset({"serve", "worker", "doctor"})


async def _dispatch(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], Awaitable[int]] = args.handler
    if args.server is not None:
        handler = remote.handler_for(args)
    return await handler(args)


if __name__ == "__main__":
    sys.exit(main())
