"""Output piped into a reader that leaves (`agentrt runs list | head`): a quiet stop.

Each command runs as the real console script with its standard output a pipe
whose reading end is already closed, so its first write fails as it does after
`head` has read enough. It must end with exit code 141 (128 + SIGPIPE, what a
shell shows for such a command) and print nothing on stderr: no traceback, no
"Exception ignored" from the interpreter's last flush.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTRT = str(Path(sys.executable).with_name("agentrt"))
EXIT_OUTPUT_CLOSED = 141


def _env(store: Path) -> dict[str, str]:
    env = {**os.environ, "AGENTRT_STORE": str(store), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env["AGENTRT_DEMO_NOTES"] = str(store.parent)
    return env


def closed_output(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``agentrt args`` with stdout a pipe nobody reads any more."""
    proc = subprocess.Popen(
        [AGENTRT, *args],
        env=_env(store),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, "", err)


def read(store: Path, *args: str) -> str:
    done = subprocess.run(
        [AGENTRT, *args], env=_env(store), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the hello and teams examples applied and one finished run."""
    path = tmp_path_factory.mktemp("pipe") / "s.db"
    read(path, "apply", "-f", "examples/hello")
    read(path, "apply", "-f", "examples/teams")
    read(path, "run", "greeter", "Say hi to Ada", "-q")
    return path


COMMANDS = {
    "apply": ["apply", "-f", "examples/hello"],
    "get": ["get", "agents"],
    "get-one": ["get", "agent", "greeter"],
    "get-json": ["get", "agents", "--json"],
    "graph": ["graph", "show", "research"],
    "runs-list": ["runs", "list"],
    "runs-show": ["runs", "show", "{run}"],
    "runs-export": ["runs", "export", "{run}"],
    "replay": ["replay", "{run}"],
    "fork": ["fork", "{run}", "--from-step", "1"],
    "cancel": ["cancel", "{run}"],
    "gc": ["gc"],
    "memory-add": ["memory", "add", "the launch is on 12 March"],
    "memory-list": ["memory", "list"],
    "doctor": ["doctor"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_whose_reader_left_stops_quietly(store: Path, name: str) -> None:
    run_id = json.loads(read(store, "runs", "list", "--json", "--limit", "1"))[0]["id"]
    args = [arg.replace("{run}", run_id) for arg in COMMANDS[name]]
    done = closed_output(store, *args)
    assert done.stderr == "", done.stderr
    assert done.returncode == EXIT_OUTPUT_CLOSED


def test_a_run_whose_trace_reader_left_stops_and_stays_resumable(store: Path) -> None:
    done = closed_output(store, "run", "greeter", "Say hi to Ada")
    assert done.stderr == "", done.stderr
    assert done.returncode == EXIT_OUTPUT_CLOSED
    latest = json.loads(read(store, "runs", "list", "--json", "--limit", "1"))[0]
    assert latest["status"] == "running"  # stopped before its end, as after Ctrl-C
    resumed = json.loads(read(store, "resume", latest["id"], "--json"))
    assert resumed["status"] == "succeeded"
    assert resumed["output"].startswith("Greeted and counted")


def test_the_demo_stops_quietly(tmp_path: Path) -> None:
    done = closed_output(tmp_path / "demo.db", "demo")
    assert done.stderr == "", done.stderr
    assert done.returncode == EXIT_OUTPUT_CLOSED
