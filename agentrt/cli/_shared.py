"""What the commands share: exit codes, output, and the Runtime a command runs with."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from agentrt import _json
from agentrt.cli.render import LiveTrace, Style, render_result
from agentrt.engine import BudgetAddition, RunResult, Runtime
from agentrt.settings import Settings
from agentrt.state import open_store
from agentrt.state.base import WAITING_STATUSES, Store

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_RUN_FAILED",
    "EXIT_STORE_FULL",
    "EXIT_STORE_INVALID",
    "EXIT_STORE_UNAVAILABLE",
    "EXIT_USAGE",
    "EXIT_WAITING",
    "OUTPUT_CLOSED",
    "exit_for",
    "finish",
    "print_json",
    "runtime",
    "settings_of",
    "style",
    "with_store",
]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_STORE_UNAVAILABLE, EXIT_STORE_INVALID, EXIT_STORE_FULL = 4, 5, 6
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell shows for a command whose reader left
OUTPUT_CLOSED = "the output's reader is gone"


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the command line read from the environment when it started."""
    settings: Settings = args.settings
    return settings


def style(args: argparse.Namespace) -> Style:
    """The styling of standard output (colour on a terminal, unless NO_COLOR)."""
    return Style.for_stream(sys.stdout, no_color=settings_of(args).no_color)


def print_json(value: Any) -> None:
    """Print ``value`` as one line of JSON."""
    print(_json.dumps_str(value))


def exit_for(result: RunResult) -> int:
    """The exit code of a command whose run ended as ``result``."""
    if result.status == "succeeded":
        return EXIT_OK
    return EXIT_WAITING if result.status in WAITING_STATUSES else EXIT_RUN_FAILED


def finish(args: argparse.Namespace, result: RunResult, *, quiet: bool = False) -> int:
    """Print a run's result (JSON, its output alone, or a summary) and return its exit code."""
    if args.json:
        print_json(result.to_dict())
    elif quiet:
        print(result.output if result.output is not None else "")
    else:
        print(render_result(result, style(args)))
    return exit_for(result)


def stop_command() -> Callable[[], None]:
    """A function that ends the running command because its output's reader is gone."""
    task = asyncio.current_task()

    def stop() -> None:
        if task is not None:
            task.cancel(OUTPUT_CLOSED)  # main() exits quietly; the run stays resumable

    return stop


def runtime(args: argparse.Namespace, *, live: bool = True, resume: bool = False) -> Runtime:
    """The Runtime a command runs with; ``live`` shows each step as it happens."""
    observers = (
        [LiveTrace(style=style(args), on_closed=stop_command())] if live and not args.json else []
    )
    settings = settings_of(args)
    return Runtime(
        args.store,
        settings=settings,
        resume_interrupted=resume,
        observers=observers,
        lease_ttl_s=settings.lease_ttl_s,
        scratch_root=settings.scratch_dir,
    )


async def with_store(args: argparse.Namespace, *, read_only: bool = False) -> Store:
    """Open the store named by ``--store`` (or the default one)."""
    # Commands that only read open the store read-only: they work on read-only
    # media and never migrate it.
    return await open_store(args.store, read_only=read_only)


def added_budget(text: str | None) -> BudgetAddition | None:
    """``--add-budget``'s value parsed (``UsageError`` naming what is wrong), if given."""
    return None if text is None else BudgetAddition.parse(text)
