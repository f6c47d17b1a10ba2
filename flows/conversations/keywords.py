"""Compliance keywords: a customer message that is exactly one keyword, case-insensitive,
with surrounding spaces and punctuation ignored, belongs to the STOP, START or HELP family.

YES is a START keyword only when no question awaits the customer's answer (the caller says
whether one does): otherwise it answers that question.
"""

from __future__ import annotations

import enum
import string


class Keyword(enum.Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"


_FAMILIES = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"),
        Keyword.STOP,
    ),
    **dict.fromkeys(("START", "UNSTOP"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}
_IGNORED = string.whitespace + string.punctuation


def classify(text: str, *, question_open: bool) -> Keyword | None:
    """The keyword family `text` is, or None when it is not exactly one keyword."""
    word = text.strip(_IGNORED).upper()
    if word == "YES":
        return None if question_open else Keyword.START
    return _FAMILIES.get(word)
