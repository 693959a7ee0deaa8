"""Hostile and mistaken resource files through the real `agentrt apply`.

Each file is refused with the loader's block (file:line, resource, field, error,
fix), exit code 2, no traceback and nothing stored, within a memory limit (a
subprocess under RLIMIT_AS) and a time bound that only guards against a hang.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTRT = str(Path(sys.executable).with_name("agentrt"))
MEMORY_LIMIT = 512 * 1024 * 1024  # a normal apply needs less than half of it

AGENT = "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n  model: m\n"
MODEL = (
    "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\n"
    "spec: {provider: scripted, script: [{steps: [{content: x}]}]}\n"
)
TOOL = (
    "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: t}\n"
    "spec:\n  kind: python\n  callable: tests.sample_tools:add\n  input_schema:\n"
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def agentrt(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [AGENTRT, "--store", str(store), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
    )


def _deep(path: Path) -> None:
    path.write_text(AGENT + "  loop: " + "[" * 3000 + "]" * 3000 + "\n")


def _laughs(path: Path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path.write_text(TOOL + "".join(f"    {line}\n" for line in lines))


def _latin1(path: Path) -> None:
    path.write_bytes((AGENT + "  instructions: Réponds en français.\n").encode("latin-1"))


def _python_tag(path: Path) -> None:
    path.write_text(AGENT + "  instructions: !!python/object/apply:os.system [touch pwned]\n")


def _huge_string(path: Path) -> None:
    path.write_text(AGENT + '  instructions: "' + "x" * 5_000_000 + '"\n')


def _duplicate_key(path: Path) -> None:
    path.write_text(MODEL + "---\n" + AGENT + "  instructions: one\n  model: other\n")


def _twice(path: Path) -> None:
    path.write_text(MODEL + "---\n" + MODEL.replace("content: x", "content: y"))


def _tool_thrice(path: Path) -> None:
    path.write_text(
        MODEL + "---\n" + TOOL + "    {type: object}\n---\n" + AGENT + "  tools: [t, t, t]\n"
    )


def _schema_type(path: Path) -> None:
    path.write_text(MODEL + "---\n" + TOOL + "    {type: 5}\n")


CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "deep": (_deep, "bad.yaml:6: file", "nested deeper than 100 levels"),
    "billion-laughs": (_laughs, "bad.yaml:12: Tool/t", "values, aliases expanded"),
    "latin-1": (_latin1, "bad.yaml:6: file", "not UTF-8 text: byte 0xe9"),
    "python-tag": (_python_tag, "bad.yaml:6: file", "tag !!python/object/apply:os.system"),
    "5-MB-string": (_huge_string, "bad.yaml: file", "larger than 1 MiB"),
    "duplicate-key": (_duplicate_key, "bad.yaml:12: Agent/a: field spec.model", "duplicate key"),
    "resource-twice": (_twice, "bad.yaml:8: Model/m: field metadata.name", "defined twice"),
    "tool-thrice": (_tool_thrice, "bad.yaml:20: Agent/a: field spec.tools[1]", "listed more"),
    "schema-type": (
        _schema_type,
        "bad.yaml:13: Tool/t: field spec.input_schema.type",
        "not a valid JSON Schema",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_one_block_with_line_field_and_fix(tmp_path: Path, case: str) -> None:
    make, where, message = CASES[case]
    path = tmp_path / "bad.yaml"
    make(path)
    store = tmp_path / "s.db"
    done = agentrt(store, "apply", "-f", str(path))
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    first, error, fix = done.stderr.strip().splitlines()
    assert first == f"{tmp_path}/{where}", first
    assert error.startswith("  error: ") and message in error, error
    assert fix.startswith("  fix:   ") and len(fix) > 12
    assert not (ROOT / "pwned").exists()
    listed = agentrt(store, "get", "models")
    assert listed.returncode == 0 and listed.stdout.strip().count("\n") == 0, "nothing stored"


def test_a_long_text_within_the_limit_applies(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(MODEL + "---\n" + AGENT + '  instructions: "' + "x" * 1_000_000 + '"\n')
    done = agentrt(tmp_path / "s.db", "apply", "-f", str(path))
    assert done.returncode == 0, done.stderr
    assert "Agent/a (namespace default) applied, generation 1" in done.stdout
