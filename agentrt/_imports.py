"""Resolve ``module:attribute`` references named in resource specs."""

from __future__ import annotations

import importlib
from typing import Any

from agentrt.errors import UsageError

__all__ = ["import_callable"]


def import_callable(reference: str, *, what: str = "callable") -> Any:
    """Import ``package.module:name`` (``name`` may be dotted) and return it.

    Raises:
        UsageError: the module or attribute does not exist, or is not callable.
    """
    module_name, _, attr_path = reference.partition(":")
    if not module_name or not attr_path:
        raise UsageError(f"{what} {reference!r} must look like `package.module:function`")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"{what} {reference!r}: cannot import module {module_name!r} ({exc}); "
            "make sure it is installed or on PYTHONPATH"
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(
                f"{what} {reference!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise UsageError(f"{what} {reference!r} is not callable")
    return target
