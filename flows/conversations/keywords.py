"""Compliance keywords: a customer message that is exactly one keyword, case-insensitive,
with surrounding spaces and punctuation ignored, belongs to the STOP, START or HELP family.
A shop adds words of its own (in its customers' language) to each family.

YES is a START keyword only when no question awaits the customer's answer (the caller says
whether one does): otherwise it answers that question.

Phrases such as "wrong number" are not keywords: they are found anywhere in a message,
whatever its letter case, punctuation and spacing (`contains_phrase`).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Mapping


class Keyword(enum.Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"


# Seed 001's answers; each is a shop setting with these defaults (conversations section).
STOP_TEXT = "You have been successfully unsubscribed."
START_TEXT = "You have been successfully resubscribed. Text STOP to unsubscribe."
HELP_TEXT = (
    "Please call %phone% for more information, or text STOP to stop these messages. "
    "Msg & Data rates may apply."
)

_FAMILIES = {
    **dict.fromkeys(
        ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"),
        Keyword.STOP,
    ),
    **dict.fromkeys(("start", "unstop"), Keyword.START),
    **dict.fromkeys(("help", "info"), Keyword.HELP),
}
BUILT_IN = frozenset(_FAMILIES)


def _ignored(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def normal(text: str) -> str:
    """`text` as keywords compare it: without surrounding spaces and punctuation, casefolded."""
    start, end = 0, len(text)
    while start < end and _ignored(text[start]):
        start += 1
    while end > start and _ignored(text[end - 1]):
        end -= 1
    return text[start:end].casefold()


def classify(
    text: str, *, question_open: bool, extra: Mapping[str, Keyword] | None = None
) -> Keyword | None:
    """The keyword family `text` is, or None when it is not exactly one keyword. `extra`: a
    shop's own words (already `normal`) and their families."""
    word = normal(text)
    if word == "yes":
        return None if question_open else Keyword.START
    return _FAMILIES.get(word) or (extra or {}).get(word)


def _words(text: str) -> str:
    # An apostrophe joins ("don't" is "dont"); other punctuation separates words.
    joined = "".join("" if c in "'’`" else c for c in text.casefold())
    spaced = "".join(" " if _ignored(c) else c for c in joined)
    return " ".join(spaced.split())


def contains_phrase(text: str, phrases: Iterable[str]) -> str:
    """The first of `phrases` that `text` contains as whole words, else ""."""
    words = f" {_words(text)} "
    return next((p for p in phrases if _words(p) and f" {_words(p)} " in words), "")
