"""Plain English for messages: counts with the right plural, nouns with the right article.

Every message that puts a number or a name before a noun goes through here
("1 step", "3 steps", "an Agent", "a Tool"), so none says "1 steps" or "a Agent".
"""

from __future__ import annotations

__all__ = ["count", "plural", "with_article"]

# Vowel letters that sound like a consonant ("a user", "a one-off") and
# acronyms whose first letter's name starts with a vowel sound ("an HTTP tool").
_CONSONANT_SOUND = ("one", "uni", "use", "usu", "uti", "eu")
_VOWEL_LETTER_NAMES = frozenset("AEFHILMNORSX")


def plural(noun: str) -> str:
    """The plural of a regular English ``noun``: step → steps, Query → Queries, box → boxes."""
    lower = noun.lower()
    if lower.endswith("y") and len(noun) > 1 and lower[-2] not in "aeiou":
        return noun[:-1] + ("IES" if noun.isupper() else "ies")
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return noun + ("ES" if noun.isupper() else "es")
    return noun + ("S" if noun.isupper() else "s")


def count(n: int | float, noun: str, plural_form: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is exactly one: "1 step", "0 steps", "2 steps"."""
    word = noun if n == 1 else (plural_form or plural(noun))
    return f"{n} {word}"


def with_article(noun: str) -> str:
    """``noun`` after "a" or "an", by its first sound: "an Agent", "a Tool", "an HTTP tool"."""
    first = noun.split(maxsplit=1)[0] if noun.strip() else noun
    head = first[:1]
    if first.isupper() and len(first) > 1:  # an acronym read letter by letter
        vowel = head in _VOWEL_LETTER_NAMES
    else:
        vowel = head.lower() in "aeiou" and not first.lower().startswith(_CONSONANT_SOUND)
    return f"{'an' if vowel else 'a'} {noun}"
