"""Resource files are untrusted: plain data only, bounded, every problem a SpecIssue."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrt.errors import SpecError
from agentrt.spec import load_paths, load_text
from agentrt.spec._yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

HEAD = "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: t}\nspec:\n  kind: python\n"
SCHEMA = HEAD + "  callable: tests.sample_tools:add\n  input_schema:\n"


def _issues(text: str, file: str = "bad.yaml") -> list[tuple[int | None, str, str, str, str]]:
    with pytest.raises(SpecError) as info:
        load_text(text, file)
    rendered = info.value.render()
    assert "Traceback" not in rendered
    return [(i.line, i.resource, i.field_path, i.message, i.fix) for i in info.value.issues]


def _schema(body: str) -> str:
    """A Tool whose input_schema holds ``body`` (indented lines)."""
    return SCHEMA + "".join(f"    {line}\n" for line in body.splitlines())


def test_deep_nesting_is_refused_at_the_limit() -> None:
    for depth in (MAX_DEPTH + 1, 3000):
        (issue,) = _issues(HEAD + "  x: " + "[" * depth + "]" * depth + "\n")
        assert issue[0] == 6 and issue[3] == f"nested deeper than {MAX_DEPTH} levels"
    # Just within the limit it loads (and then fails on the unknown field, as usual).
    (issue,) = _issues(HEAD + "  x: " + "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3) + "\n")
    assert "unknown field `x`" in issue[3]


def test_nesting_built_from_aliases_is_measured() -> None:
    # Each line nests the previous one: shallow text, deep data.
    lines = ["l0: &l0 [x]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    (issue,) = _issues(_schema("\n".join(lines)))
    assert issue[1] == "Tool/t" and "nested deeper than" in issue[3] and "aliases" in issue[3]


def test_billion_laughs_is_refused_without_expanding() -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    (issue,) = _issues(_schema("\n".join(lines)))
    assert issue[1] == "Tool/t"
    assert issue[3] == f"more than {MAX_NODES:,} values, aliases expanded"
    assert "fewer aliases" in issue[4]


def test_a_few_aliases_are_fine() -> None:
    text = _schema("type: object\nproperties:\n  a: &num {type: number}\n  b: *num\n  c: *num")
    (loaded,) = load_text(text)
    schema = loaded.resource.spec.input_schema  # type: ignore[union-attr]
    assert schema["properties"]["c"] == {"type": "number"}


def test_too_many_values_in_one_file() -> None:
    items = "".join(f"  - {i}\n" for i in range(MAX_NODES + 10))
    (issue,) = _issues(HEAD + "  x:\n" + items)
    assert issue[3] == f"more than {MAX_NODES:,} values in one file"
    assert issue[0] is not None and issue[0] > MAX_NODES - 10


def test_a_recursive_alias_is_refused() -> None:
    (issue,) = _issues(SCHEMA + "    &s {type: object, properties: {x: *s}}\n")
    assert issue[0] == 8 and "recursive" in issue[3]


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system [echo pwned]",
        "!!python/name:os.system",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!mytag 1",
    ],
)
def test_tags_that_build_objects_are_refused(tag: str) -> None:
    (issue,) = _issues(HEAD + f"  callable: {tag}\n")
    assert issue[0] == 6 and "is not allowed: resource files hold plain data" in issue[3]
    assert issue[3].startswith("the tag !")
    assert "remove the tag" in issue[4]


def test_plain_tags_still_work() -> None:
    (loaded,) = load_text(
        HEAD.replace("kind: python\n", "kind: !!str python\n") + "  callable: a.b:c\n"
    )
    assert loaded.resource.spec.kind == "python"  # type: ignore[union-attr]


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    text = (
        "apiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec:\n  model: m\n  instructions: one\n  model: n\n  loop: {max_steps: 3, max_steps: 4}\n"
    )
    assert _issues(text) == [
        (
            7,
            "Agent/a",
            "spec.model",
            "duplicate key `model` (first at line 5); YAML would keep only the last",
            "give `model` once",
        ),
        (
            8,
            "Agent/a",
            "spec.loop.max_steps",
            "duplicate key `max_steps` (first at line 8); YAML would keep only the last",
            "give `max_steps` once",
        ),
    ]


def test_merge_keys_may_be_overridden() -> None:
    text = _schema(
        "type: object\nproperties:\n  a: &base {type: string, description: x}\n"
        "  b: {<<: *base, description: y}"
    )
    (loaded,) = load_text(text)
    schema = loaded.resource.spec.input_schema  # type: ignore[union-attr]
    assert schema["properties"]["b"] == {"type": "string", "description": "y"}


def test_a_huge_number_is_an_issue() -> None:
    (issue,) = _issues(HEAD + "  timeout_s: " + "9" * 5000 + "\n")
    assert issue[0] == 6 and issue[3].startswith("cannot read the value: Exceeds the limit")


def test_control_characters_are_an_issue_with_the_line() -> None:
    (issue,) = _issues(HEAD + '  callable: "a\x00b"\n')
    assert (
        issue[0] == 6 and issue[3] == "invalid YAML: character #x0000 is not allowed in YAML text"
    )


def test_non_utf8_file_names_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes((HEAD + "  description: café\n").encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_paths([path])
    (issue,) = info.value.issues
    assert (issue.file, issue.line) == (str(path), 6)
    assert issue.message == "not UTF-8 text: byte 0xe9 at column 19 cannot be decoded"
    assert issue.fix == "save the file as UTF-8"


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + '  description: "' + "x" * (5 * MAX_FILE_BYTES) + '"\n')
    with pytest.raises(SpecError) as info:
        load_paths([path])
    (issue,) = info.value.issues
    assert issue.message == "larger than 1 MiB, the most one resource file may be"
    # Just under the limit, a long text loads.
    path.write_text(
        HEAD + "  callable: a.b:c\n  description: " + "x" * (MAX_FILE_BYTES - 200) + "\n"
    )
    (loaded,) = load_paths([path])
    assert len(loaded.resource.spec.description or "") == MAX_FILE_BYTES - 200  # type: ignore[union-attr]
