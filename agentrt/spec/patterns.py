"""Regular expressions written in specs: checked at apply, matched in linear time.

Every regex field of a resource is a :data:`Regex`, and every match of one goes
through :func:`search`. Both use RE2 (the ``google-re2`` package), whose matching
time grows linearly with the text whatever the pattern: a pattern such as
``^(a+)+$``, which keeps Python's backtracking ``re`` busy for longer than any
timeout, cannot hang a run, a route, an approval check or a stop condition.

RE2 leaves out the two features that need backtracking, backreferences (``\\1``)
and look-around (``(?=``, ``(?<=``); a pattern using them is refused at apply.
The rest is the syntax of Python's ``re``: ``(?i)``, ``\\d``, ``\\w``, ``\\b``,
``{m,n}``, named groups ``(?P<name>...)``. ``\\d``, ``\\w`` and ``\\s`` match ASCII,
and ``$`` matches only at the end of the text (not before a final newline).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import re2
from pydantic import AfterValidator

__all__ = ["Regex", "check_regex", "search"]


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported once, by us, not on stderr
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, options=_OPTIONS)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` (a validated :data:`Regex`) is found anywhere in ``text``."""
    return _compiled(pattern).search(text) is not None


def check_regex(value: str) -> str:
    """``value`` if it is a valid RE2 pattern, else a ``ValueError`` saying why."""
    try:
        _compiled(value)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(
            f"not a valid regular expression: {detail} (patterns use RE2 syntax, which has "
            "no backreferences or look-around, so that matching takes linear time)"
        ) from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]
"""A regular expression from a spec, valid in RE2 syntax; match it with :func:`search`."""
