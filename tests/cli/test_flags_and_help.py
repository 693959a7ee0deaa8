"""The `agentrt` command's global flags, version and help, as a shell user meets them."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import agentrt
from agentrt.cli.main import build_parser
from agentrt.spec import KINDS
from agentrt.state import RUN_STATUSES

ROOT = Path(__file__).resolve().parents[2]
AGENTRT = Path(sys.executable).with_name("agentrt")  # this environment's console script


def agentrt_cmd(
    *args: str, store: Path | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run the real `agentrt` command."""
    env = {**os.environ, "NO_COLOR": "1"}
    if store is not None:
        env["AGENTRT_STORE"] = str(store)
    return subprocess.run(
        [str(AGENTRT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_version_is_the_installed_package_version() -> None:
    done = agentrt_cmd("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"agentrt {agentrt.__version__}\n"
    assert agentrt.__version__ == importlib.metadata.version("agentrt")


def _leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command line that names a command to run, with the parser that reads its flags."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaf_commands(sub, (*path, name))


def _minimal_args(parser: argparse.ArgumentParser) -> list[str]:
    """Values for a command's required arguments, so that it parses."""
    out: list[str] = []
    grouped = {a for g in parser._mutually_exclusive_groups for a in g._group_actions}
    for group in parser._mutually_exclusive_groups:
        if group.required:
            out.append(group._group_actions[0].option_strings[0])
    for action in parser._actions:
        if action in grouped:
            continue
        value = str(next(iter(action.choices))) if action.choices else "1"
        if not action.option_strings:
            out.append(value)
        elif action.required:
            out += [action.option_strings[0], value]
    return out


def test_every_command_takes_the_global_flags_after_it() -> None:
    commands = list(_leaf_commands(build_parser()))
    assert ("graph", "show") in [path for path, _ in commands]
    assert ("memory", "list") in [path for path, _ in commands]
    for path, leaf in commands:
        argv = [*path, *_minimal_args(leaf)]
        after = build_parser().parse_args([*argv, "--json", "--store", "s.db"])
        assert (after.json, after.store) == (True, "s.db"), path
        before = build_parser().parse_args(["--json", "--store", "s.db", *argv])
        assert (before.json, before.store) == (True, "s.db"), path
        plain = build_parser().parse_args(argv)
        assert plain.json is False, path


def test_graph_show_json_after_the_subcommand(tmp_path: Path) -> None:
    done = agentrt_cmd(
        "graph", "show", "research", "-f", "examples/teams", "--json", store=tmp_path / "s.db"
    )
    assert done.returncode == 0, done.stderr
    drawn = json.loads(done.stdout)
    assert drawn["team"] == "research" and drawn["mermaid"].startswith("flowchart")


def test_store_after_a_nested_subcommand(tmp_path: Path) -> None:
    store = tmp_path / "late.db"
    added = agentrt_cmd("memory", "add", "Backups run at 03:00", "--store", str(store), "--json")
    assert added.returncode == 0, added.stderr
    listed = agentrt_cmd("runs", "list", "--json", "--store", str(store))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert store.exists()


def test_get_help_lists_every_kind_and_takes_plurals(tmp_path: Path) -> None:
    done = agentrt_cmd("get", "--help")
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    for kind in KINDS:
        assert kind in flat, kind
    listed = agentrt_cmd("get", "queries", store=tmp_path / "s.db")
    assert listed.returncode == 0, listed.stderr
    wrong = agentrt_cmd("get", "widgets", store=tmp_path / "s.db")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "error: unknown kind 'widgets'; use one of: " + ", ".join(KINDS)
    )


def test_runs_list_knows_every_status(tmp_path: Path) -> None:
    done = agentrt_cmd("runs", "list", "--help")
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    for status in RUN_STATUSES:
        assert status in flat, status
    waiting = agentrt_cmd("runs", "list", "--status", "waiting_approval", store=tmp_path / "s.db")
    assert waiting.returncode == 0, waiting.stderr
    wrong = agentrt_cmd("runs", "list", "--status", "done", store=tmp_path / "s.db")
    assert wrong.returncode == 2
    assert "invalid choice: 'done'" in wrong.stderr and "waiting_approval" in wrong.stderr


def test_counts_are_in_plain_grammar(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    assert agentrt_cmd("apply", "-f", "examples/hello", store=store).returncode == 0
    ran = agentrt_cmd("run", "greeter", "Say hi to Ada", store=store)
    assert ran.returncode == 0 and "succeeded in 4 steps ·" in ran.stdout
    done = agentrt_cmd("gc", "--older-than", "0s", store=store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed 1 run, ") and "0 sessions" in done.stdout
