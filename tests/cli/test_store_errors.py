"""The store's problems as a shell user meets them: one `error:` line, an exit code.

Every case runs the real `agentrt` console script in a subprocess, on real
conditions: a directory, files that are not stores, a directory this user may
not write, a read-only file system (a read-only bind mount in a private mount
namespace) and a full one (a small tmpfs filled up). The tests run as root, as
CI does; the read-only directory drops the capability that lets root ignore
permissions.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from agentrt.state._sqlite_schema import split_statements
from agentrt.state.sqlite import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]
AGENTRT = str(Path(sys.executable).with_name("agentrt"))
EXIT_STORE_UNAVAILABLE, EXIT_STORE_INVALID, EXIT_STORE_FULL = 4, 5, 6

SPEC = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m}
spec:
  provider: scripted
  script: [{steps: [{content: "hello from the store"}]}]
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: bot}
spec: {model: m}
"""
FILLER = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: filling}
spec:
  provider: scripted
  script:
    - steps:
        - tool_calls: [{name: fill_disk, arguments: {path: "{path}"}}]
        - content: "done: {last_tool_result}"
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: fill_disk}
spec: {kind: python, callable: "tests.sample_tools:fill_disk", idempotent: true}
---
apiVersion: agentrt.dev/v1
kind: Agent
metadata: {name: filler}
spec: {model: filling, tools: [fill_disk]}
"""
MORE = """\
apiVersion: agentrt.dev/v1
kind: Model
metadata: {name: m2}
spec: {provider: scripted, script: [{steps: [{content: "x"}]}]}
"""
# Root ignores file permissions through these two capabilities; without them the
# directory's mode applies, as it does to any other user.
AS_UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
# The directory given first is remounted read-only in a private mount namespace,
# for this one command only: nothing changes outside it.
READ_ONLY_FS = [
    "unshare",
    "--mount",
    "sh",
    "-ec",
    'd="$1"; shift; mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; exec "$@"',
    "sh",
]


def agentrt(
    store: str, *args: str, wrap: list[str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("AGENTRT_STORE", None)
    return subprocess.run(
        [*(wrap or []), AGENTRT, "--store", store, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with exactly one `error:` line holding ``needles``."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert done.returncode == code, (done.returncode, done.stderr)
    return lines[0]


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    (tmp_path / "more.yaml").write_text(MORE)
    return path


def filled_store(folder: Path, spec: Path) -> tuple[Path, str]:
    """A store in ``folder`` with the spec applied and one finished run; and its run id."""
    folder.mkdir(exist_ok=True)
    store = folder / "agentrt.db"
    ok(agentrt(str(store), "apply", "-f", str(spec)))
    ran = json.loads(ok(agentrt(str(store), "run", "bot", "hi", "--json")))
    assert ran["output"] == "hello from the store"
    return store, ran["run_id"]


# --- paths that are not store files -------------------------------------------


def test_a_directory_is_not_a_store(tmp_path: Path, spec: Path) -> None:
    for args in (["runs", "list"], ["get", "agents"], ["apply", "-f", str(spec)]):
        one_error(agentrt(str(tmp_path), *args), EXIT_STORE_UNAVAILABLE, str(tmp_path), "directory")


def test_an_empty_store_path_is_refused(tmp_path: Path, spec: Path) -> None:
    for args in (["runs", "list"], ["apply", "-f", str(spec)]):
        one_error(agentrt("", *args, cwd=tmp_path), EXIT_STORE_UNAVAILABLE, "empty")
    assert list(tmp_path.iterdir()) == [spec, tmp_path / "more.yaml"]


def test_a_parent_that_is_a_file(tmp_path: Path, spec: Path) -> None:
    store = spec / "agentrt.db"
    one_error(
        agentrt(str(store), "apply", "-f", str(spec)),
        EXIT_STORE_UNAVAILABLE,
        str(store),
        "not a directory",
    )


def _text(path: Path) -> None:
    path.write_text("these are my notes, not a database\n")


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(20_000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")


def _foreign_with_its_own_schema_version(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO schema_version VALUES (1, 0)")


def _empty_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 1")


NOT_STORES = {
    "text": (_text, "not a SQLite database"),
    "garbage": (_garbage, "not a SQLite database"),
    "empty": (_empty, "empty file (0 bytes)"),
    "foreign": (_foreign, "another application"),
    "foreign-schema-version": (_foreign_with_its_own_schema_version, "another application"),
    "empty-sqlite": (_empty_sqlite, "not an agentrt store"),
}


@pytest.mark.parametrize("kind", list(NOT_STORES))
def test_a_file_that_is_not_a_store_is_refused_and_left_alone(
    tmp_path: Path, spec: Path, kind: str
) -> None:
    make, phrase = NOT_STORES[kind]
    store = tmp_path / "data.db"
    make(store)
    before, names = digest(store), siblings(store)
    for args in (["runs", "list"], ["get", "agents"], ["apply", "-f", str(spec)]):
        one_error(agentrt(str(store), *args), EXIT_STORE_INVALID, str(store), phrase)
    assert digest(store) == before, "the file was changed"
    assert siblings(store) == names, "files were created beside it"


@pytest.mark.parametrize("cut", [50, 3000, 0.5])
def test_a_truncated_store_is_reported_damaged(
    tmp_path: Path, spec: Path, cut: float | int
) -> None:
    store, _ = filled_store(tmp_path / "s", spec)
    data = store.read_bytes()
    store.write_bytes(data[: int(len(data) * cut) if isinstance(cut, float) else cut])
    for args in (["runs", "list"], ["apply", "-f", str(spec)]):
        one_error(agentrt(str(store), *args), EXIT_STORE_INVALID, str(store), "damaged (truncated")


def test_a_store_damaged_inside_is_reported_damaged(tmp_path: Path, spec: Path) -> None:
    store, run_id = filled_store(tmp_path / "s", spec)
    data = bytearray(store.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = random.Random(3).randbytes(len(data) - page)  # every page but the first
    store.write_bytes(bytes(data))
    for args in (["runs", "show", run_id], ["apply", "-f", str(spec)]):
        one_error(agentrt(str(store), *args), EXIT_STORE_INVALID, str(store), "damaged")


# --- read-only media -------------------------------------------------------------


def test_read_only_directory_serves_reads_and_refuses_writes(tmp_path: Path, spec: Path) -> None:
    store, run_id = filled_store(tmp_path / "ro", spec)
    before = digest(store)
    store.parent.chmod(0o555)
    try:
        run = AS_UNPRIVILEGED
        assert run_id in ok(agentrt(str(store), "runs", "list", wrap=run))
        assert "hello from the store" in ok(agentrt(str(store), "runs", "show", run_id, wrap=run))
        assert "bot" in ok(agentrt(str(store), "get", "agents", wrap=run))
        exported = json.loads(ok(agentrt(str(store), "runs", "export", run_id, wrap=run)))
        assert exported["run"]["id"] == run_id
        for args in (["apply", "-f", str(spec)], ["run", "bot", "again"]):
            one_error(
                agentrt(str(store), *args, wrap=run),
                EXIT_STORE_UNAVAILABLE,
                str(store),
                f"directory {store.parent} is not writable",
            )
        new = store.parent / "new.db"
        one_error(
            agentrt(str(new), "apply", "-f", str(spec), wrap=run),
            EXIT_STORE_UNAVAILABLE,
            str(new),
            "not writable",
        )
        # Reading a store that does not exist yet shows nothing, and creates nothing.
        assert ok(agentrt(str(new), "runs", "list", wrap=run)).startswith("RUN")
        assert not new.exists()
    finally:
        store.parent.chmod(0o755)
    assert digest(store) == before


def test_read_only_file_system_serves_reads_and_refuses_writes(tmp_path: Path, spec: Path) -> None:
    store, run_id = filled_store(tmp_path / "media", spec)
    before, names = digest(store), siblings(store)
    ro = [*READ_ONLY_FS, str(store.parent)]
    assert run_id in ok(agentrt(str(store), "runs", "list", wrap=ro))
    assert "hello from the store" in ok(agentrt(str(store), "runs", "show", run_id, wrap=ro))
    assert "bot" in ok(agentrt(str(store), "get", "agents", wrap=ro))
    assert json.loads(ok(agentrt(str(store), "runs", "export", run_id, wrap=ro)))["events"]
    target = store.parent / "run.json"
    one_error(
        agentrt(str(store), "runs", "export", run_id, "-o", str(target), wrap=ro),
        2,
        f"cannot write {target}",
        "Read-only file system",
    )
    for args in (["apply", "-f", str(spec)], ["run", "bot", "again"], ["gc"]):
        one_error(
            agentrt(str(store), *args, wrap=ro),
            EXIT_STORE_UNAVAILABLE,
            str(store),
            "read-only file system",
        )
    assert digest(store) == before and siblings(store) == names


def _older_store(path: Path, version: int) -> None:
    """A store as an earlier agentrt left it: schema ``version``, no application id."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        for migration in MIGRATIONS[:version]:
            for statement in split_statements(migration.script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, 0)", (migration.number,))
        conn.commit()


def test_reads_never_migrate_and_say_which_command_will(tmp_path: Path, spec: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    store = folder / "agentrt.db"
    _older_store(store, len(MIGRATIONS) - 1)
    before = digest(store)
    latest = MIGRATIONS[-1].number
    for wrap in ([*READ_ONLY_FS, str(folder)], None):
        line = one_error(
            agentrt(str(store), "runs", "list", wrap=wrap),
            EXIT_STORE_INVALID,
            str(store),
            f"schema version {MIGRATIONS[-2].number}",  # all but the last applied
        )
        assert "apply" in line
        assert digest(store) == before, "a read migrated the store"
    one_error(
        agentrt(str(store), "apply", "-f", str(spec), wrap=[*READ_ONLY_FS, str(folder)]),
        EXIT_STORE_UNAVAILABLE,
        "read-only file system",
    )
    # A command that writes migrates it (an older agentrt's store is still one of ours).
    ok(agentrt(str(store), "apply", "-f", str(spec)))
    assert "bot" in ok(agentrt(str(store), "get", "agents"))
    with closing(sqlite3.connect(store)) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (latest,)


def test_a_store_of_a_newer_agentrt_is_refused(tmp_path: Path, spec: Path) -> None:
    store, _ = filled_store(tmp_path / "s", spec)
    with closing(sqlite3.connect(store)) as conn, conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    for args in (["runs", "list"], ["apply", "-f", str(spec)]):
        one_error(agentrt(str(store), *args), EXIT_STORE_INVALID, str(store), "schema version 999")


# --- a full disk -------------------------------------------------------------------

FULL_DISK = r"""
set -u
d="$1"; spec="$2"; more="$3"; out="$4"; filler="$5"
mount -t tmpfs -o size=1536k tmpfs "$d"
step() { name="$1"; shift; "$@" >"$out/$name.out" 2>"$out/$name.err"; echo $? >"$out/$name.rc"; }
step apply agentrt --store "$d/s.db" apply -f "$spec"
step run agentrt --store "$d/s.db" run bot hi --json
dd if=/dev/zero of="$d/fill" bs=4096 2>/dev/null
step apply_full agentrt --store "$d/s.db" apply -f "$more"
step run_full agentrt --store "$d/s.db" run bot again
step list_full agentrt --store "$d/s.db" runs list --json
step new_full agentrt --store "$d/new.db" apply -f "$spec"
rm "$d/fill"
step list agentrt --store "$d/s.db" runs list --json
step apply_more agentrt --store "$d/s.db" apply -f "$more"
step get agentrt --store "$d/s.db" get models
# The disk fills up during a run, between a tool's call and its result.
step apply_filler agentrt --store "$d/s.db" apply -f "$filler"
step fill_run agentrt --store "$d/s.db" run filler go
rm "$d/tool-fill"
agentrt --store "$d/s.db" runs list --json >"$out/runs.json"
step resume agentrt --store "$d/s.db" resume "$(python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])' <"$out/runs.json")" --json
"""


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path: Path, spec: Path) -> None:
    mnt, out = tmp_path / "disk", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    filler = tmp_path / "filler.yaml"
    filler.write_text(FILLER.replace("{path}", str(mnt / "tool-fill")))
    env = {**os.environ, "NO_COLOR": "1", "PATH": f"{Path(AGENTRT).parent}:{os.environ['PATH']}"}
    env.pop("AGENTRT_STORE", None)
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", FULL_DISK, "sh"]
        + [str(p) for p in (mnt, spec, tmp_path / "more.yaml", out, filler)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    def result(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            [name],
            int((out / f"{name}.rc").read_text()),
            (out / f"{name}.out").read_text(),
            (out / f"{name}.err").read_text(),
        )

    ok(result("apply"))
    first = json.loads(ok(result("run")))["run_id"]
    for name in ("apply_full", "run_full"):
        one_error(result(name), EXIT_STORE_FULL, str(mnt / "s.db"), "no space left")
    one_error(result("new_full"), EXIT_STORE_FULL, str(mnt / "new.db"), "no space left")
    # Reading needs no space; after space is freed, everything recorded is there.
    assert [r["id"] for r in json.loads(ok(result("list_full")))] == [first]
    assert [r["id"] for r in json.loads(ok(result("list")))] == [first]
    ok(result("apply_more"))
    assert "m2" in ok(result("get"))
    # The run stopped (a note names it, one error line says why), not `failed`; after
    # space is freed it resumes from its log and ends as it would have.
    ok(result("apply_filler"))
    (interrupted,) = [
        r for r in json.loads((out / "runs.json").read_text()) if r["agent"] == "filler"
    ]
    assert interrupted["status"] == "running"
    stopped = result("fill_run")
    note, error = stopped.stderr.strip().splitlines()
    assert note == (
        f"agentrt: {interrupted['id']} stopped before its end (StoreFull); it stays resumable"
    )
    one_error(
        subprocess.CompletedProcess([], stopped.returncode, "", error),
        EXIT_STORE_FULL,
        "no space left",
        "agentrt resume",
    )
    resumed = json.loads(ok(result("resume")))
    assert resumed["status"] == "succeeded" and resumed["output"] == "done: filled before"
