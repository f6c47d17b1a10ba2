"""The compliance keyword classifier as a table."""

from __future__ import annotations

import pytest

from flows.conversations.keywords import Keyword, classify

STOP, START, HELP = Keyword.STOP, Keyword.START, Keyword.HELP


@pytest.mark.parametrize(
    ("text", "question_open", "expected"),
    [
        ("STOP", False, STOP),
        ("stop", True, STOP),
        ("  Stop.  ", False, STOP),
        ("!!stopall!!", False, STOP),
        ("Unsubscribe", False, STOP),
        ("cancel", False, STOP),
        ("END", False, STOP),
        ("quit", False, STOP),
        ("OptOut", False, STOP),
        ("revoke\n", False, STOP),
        ("START", False, START),
        ("unstop", True, START),
        ("yes", False, START),
        ("Yes!", True, None),
        ("HELP", False, HELP),
        ("info?", True, HELP),
        ("stop it", False, None),
        ("please stop", False, None),
        ("opt out", False, None),
        ("STOPP", False, None),
        ("", False, None),
        ("...", False, None),
        ("1", False, None),
    ],
)
def test_classify(text, question_open, expected):
    assert classify(text, question_open=question_open) is expected
