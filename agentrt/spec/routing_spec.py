"""An Agent's ``routing``: which Model each model step asks, by rule or by tier.

Rules pick a step's Model from what the query is (its input's length, its tags,
the label a classifier hook gives it); tiers, cheapest first, are where a step
goes next when an answer fails the ``check``. Hooks are named here, never
imported: the program that embeds the runtime registers them on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from agentrt.spec._base import NAME, Names, Strict
from agentrt.spec._checks import field_problem
from agentrt.spec.patterns import Regex

__all__ = ["AnswerCheck", "RouteWhen", "Routing", "RoutingRule", "valid_json_schema"]

HOOK_NAME = r"^[A-Za-z_][\w.-]{0,62}$"
"""A hook's name as the embedding program registered it."""


def valid_json_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` if it is valid JSON Schema (draft 2020-12, or its ``$schema``)."""
    if schema is None:
        return None
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    cls: Any = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise field_problem(
            f"not a valid JSON Schema: {exc.message}",
            list(exc.absolute_path),
            "make it valid JSON Schema (see https://json-schema.org)",
        ) from None
    return schema


class RouteWhen(Strict):
    """What a query must be for a rule to pick its Model: every condition given (none: always)."""

    min_input_chars: int | None = Field(
        default=None, ge=0, description="the query's input has at least this many characters"
    )
    max_input_chars: int | None = Field(
        default=None, ge=0, description="the query's input has at most this many characters"
    )
    tags: Names = Field(default_factory=list, description="the query has all these tags")
    classifier: str | None = Field(
        default=None,
        pattern=HOOK_NAME,
        description="a classifier hook registered on the Runtime (by name); with `label`",
    )
    label: str | None = Field(
        default=None, description="what the `classifier` must answer for the rule to hold"
    )

    @model_validator(mode="after")
    def _classifier_with_label(self) -> Self:
        if (self.classifier is None) != (self.label is None):
            raise field_problem(
                "`classifier` and `label` go together",
                ["label" if self.label is None else "classifier"],
                "name the classifier hook and the label it must answer for the rule to hold, "
                "or neither",
            )
        return self


class RoutingRule(Strict):
    """One rule: when the query is so, the step asks this Model."""

    when: RouteWhen = Field(default_factory=RouteWhen)
    model: str = Field(pattern=NAME, description="the Model the step asks (its fallbacks after)")


class AnswerCheck(Strict):
    """What an answer (a reply without tool calls) must be, else the next tier is asked.

    Every check given must pass; the first that fails is why it escalates.
    """

    matches: Regex | None = Field(default=None, description="a regex searched in the answer")
    parses_as_json: bool = Field(default=False, description="the answer parses as JSON")
    json_schema: Annotated[dict[str, Any] | None, AfterValidator(valid_json_schema)] = Field(
        default=None, description="the answer is JSON valid against this JSON Schema"
    )
    hook: str | None = Field(
        default=None,
        pattern=HOOK_NAME,
        description="a check hook registered on the Runtime (by name) passes the answer",
    )
    on_last_failure: Literal["fail", "accept"] = Field(
        default="fail",
        description="an answer of the last tier that fails: fail the run (check_failed), or "
        "accept it as it is",
    )

    @model_validator(mode="after")
    def _something_checked(self) -> Self:
        given = (self.matches, self.parses_as_json or None, self.json_schema, self.hook)
        if all(value is None for value in given):
            raise field_problem(
                "a check checks something",
                [],
                "give `matches` (a regex), `parses_as_json: true`, `json_schema` or `hook` "
                "(a check hook registered on the Runtime)",
            )
        return self


class Routing(Strict):
    """Which Model each model step of the Agent asks (instead of always its ``model``).

    The first rule whose ``when`` holds picks the Model; none: the Agent's
    ``model``. With ``tiers`` (cheapest first) and a ``check``, an answer that
    fails the check sends the step again to the tier after its Model's; the rest
    of the run stays on that tier.
    """

    rules: list[RoutingRule] = Field(
        default_factory=list, description="the first that holds picks the step's Model"
    )
    tiers: Names = Field(
        default_factory=list, description="Models, cheapest first, escalated through on `check`"
    )
    check: AnswerCheck | None = Field(
        default=None, description="what an answer must be, else the next tier is asked"
    )

    @model_validator(mode="after")
    def _tiers_with_check(self) -> Self:
        if bool(self.tiers) != (self.check is not None):
            raise field_problem(
                "`tiers` and `check` go together: escalation needs the tiers to go through "
                "and the check that sends an answer on",
                ["check" if self.check is None else "tiers"],
                "give both (tiers cheapest first), or neither",
            )
        if not self.rules and not self.tiers:
            raise field_problem(
                "routing needs `rules`, or `tiers` with a `check`",
                [],
                "add rules (`- when: {...}` and `model`), or tiers and a check; or drop "
                "`routing` to always ask the Agent's `model`",
            )
        return self

    def models(self) -> list[str]:
        """Every Model it names, without repeats, in order."""
        names = [rule.model for rule in self.rules] + list(self.tiers)
        return list(dict.fromkeys(names))
