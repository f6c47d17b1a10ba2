"""The settings' conversations section: seed 001's answers by default, the shop's own keywords
and flagged phrases, and every bad value refused naming its field."""

from __future__ import annotations

import pytest

from flows.conversations.keywords import HELP_TEXT, STOP_TEXT
from flows.shops.settings import SettingsError, validate_settings


def problems(section: dict) -> dict[str, str]:
    with pytest.raises(SettingsError) as refused:
        validate_settings({"conversations": section}, country="IN")
    return {p.field: p.message for p in refused.value.problems}


def test_defaults_are_seed_001s_answers_and_nothing_is_turned_on():
    section = validate_settings({}, country="IN").conversations
    assert (section.stop_text, section.help_text) == (STOP_TEXT, HELP_TEXT)
    assert "%phone%" in section.help_text
    assert section.not_understood is False and section.opt_out_on_flag is False
    assert "wrong number" in section.flag_phrases


def test_a_shop_adds_words_in_its_language():
    section = validate_settings(
        {"conversations": {"stop_words": ["रोकें"], "start_words": ["शुरू"]}}, country="IN"
    ).conversations
    assert section.stop_words == ["रोकें"] and section.start_words == ["शुरू"]


@pytest.mark.parametrize(
    ("section", "field", "says"),
    [
        ({"stop_text": ""}, "conversations.stop_text", "must not be empty"),
        ({"help_text": "Call %shop%"}, "conversations.help_text", "unknown placeholder %shop%"),
        ({"not_understood_text": "No %phone%"}, "conversations.not_understood_text", "%phone%"),
        ({"stop_words": ["2"]}, "conversations.stop_words.0", "must not be a number"),
        ({"stop_words": ["HALT", "Stop!"]}, "conversations.stop_words.1", "built-in"),
        ({"help_words": ["yes"]}, "conversations.help_words.0", "built-in"),
        ({"start_words": ["..."]}, "conversations.start_words.0", "letter or digit"),
        ({"flag_phrases": [" ! "]}, "conversations.flag_phrases.0", "letter or digit"),
        ({"not_understood": "yes"}, "conversations.not_understood", "true or false"),
        ({"opt_out_on_flag": 1}, "conversations.opt_out_on_flag", "true or false"),
        ({"unknown": True}, "conversations.unknown", "Extra inputs"),
        (
            {"stop_words": ["रोकें"], "help_words": ["रोकें!"]},
            "conversations.help_words",
            "another keyword family",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(section, field, says):
    found = problems(section)
    assert field in found, found
    assert says in found[field]
