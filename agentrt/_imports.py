"""Resolve ``module:attribute`` references named in resource specs."""

from __future__ import annotations

import importlib
from typing import Any

from agentrt.errors import UsageError

__all__ = ["CallableNotFound", "import_callable"]


class CallableNotFound(UsageError):
    """A ``module:function`` reference that does not resolve; ``problem`` and ``fix`` say why."""

    def __init__(self, what: str, reference: str, problem: str, fix: str) -> None:
        super().__init__(f"{what} {reference!r}: {problem}; {fix}")
        self.reference = reference
        self.problem = problem
        self.fix = fix


def import_callable(reference: str, *, what: str = "callable") -> Any:
    """Import ``package.module:name`` (``name`` may be dotted) and return it.

    Raises:
        CallableNotFound: the module does not import (missing, or raising while it
            loads), the attribute does not exist, or it is not callable.
    """
    module_name, _, attr_path = reference.partition(":")
    if not module_name or not attr_path:
        raise CallableNotFound(
            what, reference, "not a reference", "write it as `package.module:function`"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CallableNotFound(
            what,
            reference,
            f"cannot import module {module_name!r} ({exc})",
            "make sure it is installed or on PYTHONPATH (references resolve from the "
            "directory agentrt runs in)",
        ) from None
    except Exception as exc:  # the module itself is broken: a SyntaxError, a failing import
        raise CallableNotFound(
            what,
            reference,
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc}",
            "fix the module so that it imports",
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CallableNotFound(
                what,
                reference,
                f"module {module_name!r} has no attribute {attr_path!r}",
                "check the function's name",
            ) from None
    if not callable(target):
        raise CallableNotFound(what, reference, "is not callable", "name a function")
    return target
