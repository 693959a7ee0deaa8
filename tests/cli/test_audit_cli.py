"""``agentrt audit list`` and ``agentrt audit verify`` on both stores: the log of what the
command line did, filtered; a whole log verifies (exit 0); a record changed behind the
store's back fails verification (exit 1) with one line naming it; bad flags are one
line, exit 2, no traceback."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from agentrt.cli.audit import parse_time
from agentrt.cli.main import main
from agentrt.models.testserver import ModelTestServer
from tests.cli.test_cli import _apply
from tests.conftest import call, rules
from tests.pg import admin, fresh_schema, url_of


@pytest.fixture
def server() -> Iterator[ModelTestServer]:
    srv = ModelTestServer(
        rules({"tool_calls": [call("add", a=40, b=2)]}, {"content": "{last_tool_result}"})
    )
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop_thread()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The store the commands use (``AGENTRT_STORE``), of each backend."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("USER", "ops")
    if request.param == "sqlite":
        path = str(tmp_path / "cli.db")
        monkeypatch.setenv("AGENTRT_STORE", path)
        yield path
        return
    with fresh_schema() as schema:
        monkeypatch.setenv("AGENTRT_STORE", url_of(schema))
        yield schema


def _tamper(store: str, statement: str) -> None:
    """Change the log the way someone with the database's keys could."""
    if store.endswith(".db"):
        with closing(sqlite3.connect(store)) as conn, conn:
            conn.execute("DROP TRIGGER audit_no_update")
            conn.execute(statement)
        return
    with admin() as conn:
        conn.execute(f'SET search_path TO "{store}"')
        conn.execute("ALTER TABLE audit DISABLE TRIGGER audit_no_change")
        conn.execute(statement)


def test_audit_list_and_verify(
    store: str, tmp_path: Path, server: ModelTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "-f", str(_apply(tmp_path, server.url))]) == 0
    assert main(["run", "bot", "add 40 and 2", "--json"]) == 0
    run = json.loads(capsys.readouterr().out.splitlines()[-1])["run_id"]

    assert main(["audit", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SEQ", "TIME", "KIND", "WHO", "AGENT", "RUN", "WHAT"]
    assert [line.split()[3] for line in table[1:]] == [
        "resource.applied", "resource.applied", "resource.applied", "run.submitted", "tool.call",
    ]  # fmt: skip
    assert table[3].split()[4:] == ["ops", "bot", "-", "Agent/bot", "(generation", "1)"]
    assert table[-1].split()[4:] == ["-", "bot", run, "add", "step", "2"]  # a CLI run: nobody
    assert main(["audit", "list", "--kind", "tool.call", "--run", run, "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["seq"], record["body"]["tool"], record["body"]["args"]) == (
        5, "add", '{"a":40,"b":2}',
    )  # fmt: skip
    assert main(["audit", "list", "--principal", "ops", "--since", "1h", "--limit", "2"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["SEQ", "2", "3"]
    assert main(["audit", "list", "--agent", "nobody"]) == 0
    assert capsys.readouterr().out == "no records\n"

    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit log of 'default': 5 records intact, head ")
    assert main(["audit", "verify", "-n", "default", "--json"]) == 0
    (verdict,) = json.loads(capsys.readouterr().out)
    assert (verdict["ok"], verdict["records"], verdict["broken"]) == (True, 5, None)

    _tamper(store, "UPDATE audit SET principal = 'mallory' WHERE seq = 4")
    assert main(["audit", "verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: audit log of 'default' is broken at record 4: its hash does not match its "
        "contents: it was edited or forged\n"
    )
    assert main(["audit", "verify", "--json"]) == 1
    (verdict,) = json.loads(capsys.readouterr().out)
    assert verdict["broken"] == {
        "seq": 4, "kind": "altered", "detail": "its hash does not match its contents: it was edited or forged",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--since", "yesterday"], "argument --since: 'yesterday' is not a time: give a date"),
        (["--limit", "0"], "argument --limit: '0' is not a whole number of at least 1"),
        (["--kind", "tool.calls"], "argument --kind: invalid choice: 'tool.calls'"),
    ],
)
def test_bad_flags_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "cli.db"))
    with pytest.raises(SystemExit) as exit:
        main(["audit", "list", *flags])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_store_with_no_log_and_times_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTRT_STORE", str(tmp_path / "empty.db"))
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out == "no audit log in this store\n"
    assert parse_time("90s", now=1000.0) == 910.0
    assert parse_time("2d", now=200_000.0) == 200_000.0 - 2 * 86400
    assert parse_time("1700000000.5") == 1700000000.5
    assert parse_time("2026-01-31T12:00:00+00:00") == 1769860800.0
    assert parse_time("2026-01-31") == time.mktime((2026, 1, 31, 0, 0, 0, 0, 0, -1))
