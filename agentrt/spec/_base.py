"""What every resource model shares: strict, frozen validation and the name patterns."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from agentrt.spec._checks import unique_names

__all__ = ["CALLABLE", "NAME", "Names", "Strict"]

NAME = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
"""A resource name: lower-case letters, digits, '.', '_', '-' (a DNS label, up to 63)."""
CALLABLE = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
"""A ``module:function`` reference."""

Names = Annotated[list[str], AfterValidator(unique_names)]
"""A list of names in which each may appear once (a repeat is a mistake, never a meaning)."""


class Strict(BaseModel):
    """A resource model: unknown fields are errors (a typo names the field), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
