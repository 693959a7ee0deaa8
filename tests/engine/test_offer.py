"""Model names of tools: valid for every model API, reversible, collision-free."""

from __future__ import annotations

import hashlib
import itertools

from agentrt.engine.offer import MODEL_NAME, model_names

LONG = "summarise_the_quarterly_report_of_every_department_in_the_company_"


def hashed(prefix: str, name: str) -> str:
    """The rules' hashed form, restated: 55 characters, '_', 8 hex digits of the name."""
    return f"{prefix[:55]}_{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


def names(*tools: tuple[str, str]) -> list[str | None]:
    return model_names(list(tools))[0]


def test_valid_names_stay_as_they_are() -> None:
    assert names(("calc", "add"), ("calc", "get-weather"), ("calc", "A_b-9")) == [
        "add",
        "get-weather",
        "A_b-9",
    ]
    assert names(("calc", "x" * 64)) == ["x" * 64]


def test_names_models_refuse_are_made_valid() -> None:
    tools = [("t", n) for n in ["files.read", "ns/echo", "read file", "résumé", "", LONG + "now"]]
    got = names(*tools)
    assert got[:5] == ["files_read", "ns_echo", "read_file", "r_sum_", "_"]
    assert got[5] == hashed(LONG, LONG + "now") and len(got[5] or "") == 64
    assert all(n is not None and MODEL_NAME.match(n) for n in got)


def test_long_names_sharing_their_first_64_characters_stay_apart() -> None:
    got = names(("t", LONG + "now"), ("t", LONG + "later"))
    assert got == [hashed(LONG, LONG + "now"), hashed(LONG, LONG + "later")]
    assert got[0] != got[1]


def test_a_clash_within_one_tool_keeps_the_name_that_was_valid() -> None:
    for order in itertools.permutations([("t", "files.read"), ("t", "files_read")]):
        mapped = dict(zip(order, names(*order), strict=True))
        assert mapped == {
            ("t", "files_read"): "files_read",
            ("t", "files.read"): hashed("files_read", "files.read"),
        }


def test_a_name_offered_by_two_tools_is_qualified_for_both() -> None:
    got, notices = model_names([("web", "search"), ("docs", "search"), ("web", "fetch")])
    assert got == ["web__search", "docs__search", "fetch"]
    assert notices == [
        "tool 'search' is offered by Tools web, docs: offered as web__search, docs__search"
    ]
    # The same rule when the clash comes from making names valid.
    assert names(("web.v2", "a.b"), ("docs", "a_b")) == ["web_v2__a_b", "docs__a_b"]


def test_a_name_that_clashes_after_every_rule_is_left_out_with_a_notice() -> None:
    taken = hashed("x_y", "x.y")  # what x.y becomes once it clashes with x_y
    got, notices = model_names([("t", "x_y"), ("t", taken), ("t", "x.y")])
    assert got == ["x_y", taken, None]
    assert notices == [
        f"tool 'x.y' of Tool t is left out: its name {taken!r} clashes with {taken!r} of Tool t"
    ]


def test_names_are_stable_and_unique_over_many_tools() -> None:
    own = [f"{p}{sep}{i}" for p in ("a", "b.c", "d e") for sep in (".", "_", "/") for i in range(5)]
    tools = [(f"tool{i % 3}", n) for i, n in enumerate(own)] + [("x", o) for o in own[:4]]
    first, _ = model_names(tools)
    assert first == model_names(tools)[0]
    offered = [n for n in first if n is not None]
    assert len(offered) == len(set(offered)) == len(tools)
    assert all(MODEL_NAME.match(n) for n in offered)
