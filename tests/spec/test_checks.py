"""Field checks beyond types: names listed once, a tool's input schema, a resource once."""

from __future__ import annotations

import pytest

from agentrt.errors import SpecError
from agentrt.spec import check_references, load_text

MODEL = (
    "apiVersion: agentrt.dev/v1\nkind: Model\nmetadata: {name: m}\n"
    "spec: {provider: scripted, script: [{steps: [{content: x}]}]}\n"
)


def _tool(schema: str) -> str:
    return (
        "apiVersion: agentrt.dev/v1\nkind: Tool\nmetadata: {name: t}\n"
        "spec:\n  kind: python\n  callable: tests.sample_tools:add\n"
        f"  input_schema: {schema}\n"
    )


def _issues(text: str) -> list[tuple[int | None, str, str, str, str]]:
    with pytest.raises(SpecError) as info:
        check_references(load_text(text, "bad.yaml"))
    return [(i.line, i.resource, i.field_path, i.message, i.fix) for i in info.value.issues]


def test_a_tool_listed_twice_names_the_repeat() -> None:
    text = (
        MODEL
        + "---\n"
        + _tool("{type: object}")
        + (
            "---\napiVersion: agentrt.dev/v1\nkind: Agent\nmetadata: {name: a}\n"
            "spec:\n  model: m\n  tools:\n    - t\n    - t\n    - t\n"
        )
    )
    assert _issues(text) == [
        (
            21,
            "Agent/a",
            "spec.tools[1]",
            "'t' is listed more than once (as items 0 and 1)",
            "list each name once",
        )
    ]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{model: m, loop: {stop: {on_tools: [t, t]}}}", "spec.loop.stop.on_tools[1]"),
        ("{provider: scripted, fallbacks: [m, m]}", "spec.fallbacks[1]"),
    ],
)
def test_other_lists_of_names_are_checked_too(spec: str, field: str) -> None:
    kind = "Agent" if "model:" in spec else "Model"
    text = f"apiVersion: agentrt.dev/v1\nkind: {kind}\nmetadata: {{name: x}}\nspec: {spec}\n"
    (issue,) = _issues(text)
    assert issue[2] == field and "listed more than once" in issue[3]


@pytest.mark.parametrize(
    ("schema", "field", "message", "fix"),
    [
        (
            "{type: 5}",
            "spec.input_schema.type",
            "not a valid JSON Schema: 5 is not valid under any of the given schemas",
            "use one of: array, boolean, integer, null, number, object, string",
        ),
        (
            "{type: object, properties: {n: {type: integr}}}",
            "spec.input_schema.properties.n.type",
            "not a valid JSON Schema: 'integr' is not valid under any of the given schemas",
            "use one of:",
        ),
        (
            "{type: object, required: name}",
            "spec.input_schema.required",
            "not a valid JSON Schema: 'name' is not of type 'array'",
            "make it valid JSON Schema",
        ),
        (
            "{type: object, properties: {s: {type: string, pattern: '(unclosed'}}}",
            "spec.input_schema.properties.s.pattern",
            "not a valid JSON Schema: '(unclosed' is not a 'regex'",
            "make it valid JSON Schema",
        ),
        (
            "{type: string}",
            "spec.input_schema.type",
            "a tool's input must be an object of named arguments",
            "set `type: object`",
        ),
        (
            "{properties: {a: {type: string}}}",
            "spec.input_schema",
            "a tool's input must be an object of named arguments",
            "set `type: object`",
        ),
        (
            "{$schema: 'https://example.com/my-schema', type: object}",
            "spec.input_schema.$schema",
            "unknown `$schema` 'https://example.com/my-schema'",
            "remove `$schema`",
        ),
    ],
)
def test_input_schema_must_be_a_json_schema_of_an_object(
    schema: str, field: str, message: str, fix: str
) -> None:
    (issue,) = _issues(_tool(schema))
    assert issue[:3] == (7, "Tool/t", field)
    assert issue[3] == message
    assert issue[4].startswith(fix)


def test_valid_input_schemas_of_any_draft_load() -> None:
    for schema in (
        "{type: object, properties: {n: {type: integer, minimum: 0}}, required: [n]}",
        "{$schema: 'http://json-schema.org/draft-07/schema#', type: object}",
        "{type: object, additionalProperties: false}",
    ):
        (loaded,) = load_text(_tool(schema))
        assert loaded.resource.spec.input_schema["type"] == "object"  # type: ignore[union-attr]


def test_the_same_resource_twice_in_one_apply_is_an_error() -> None:
    twice = MODEL + "---\n" + MODEL.replace("content: x", "content: y")
    assert _issues(twice) == [
        (
            8,
            "Model/m",
            "metadata.name",
            "Model 'm' of namespace 'default' is defined twice, differently (also at bad.yaml:1)",
            "keep one definition, or give one of them another name",
        )
    ]
    # The same name in another namespace is another resource; the same definition
    # twice is one resource.
    other = MODEL.replace("{name: m}", "{name: m, namespace: other}")
    check_references(load_text(MODEL + "---\n" + other + "---\n" + MODEL))
