"""Provider forms: `form_body` encodes a form as `urlencode(form, doseq=True)` does (what
aiohttp's FormData sends), and a fake provider reads it back field for field."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest

from providers.http import form_body

FORMS = [
    {"From": "+919876500011", "Url": "http://my.exotel.com/a/exoml/start_voice/7?x=1&y=2"},
    {"StatusCallbackEvent": ["initiated", "completed"], "Timeout": 30, "Record": True},
    {"Body": "नमस्ते, आपका ऑर्डर #1001 ✓ " * 20, "Empty": "", "Spaces": "a b+c/d"},
    {"None": [], "Tuple": ("1", "2")},
]


@pytest.mark.parametrize("form", FORMS)
def test_a_form_is_encoded_as_urlencode_does(form):
    assert form_body(form) == urlencode(form, doseq=True).encode()


def test_a_value_seen_before_is_encoded_the_same():
    form = {"CallerId": "08047110000", "To": "+919876500012"}
    assert form_body(form) == form_body(dict(form)) == urlencode(form).encode()
    assert parse_qsl(form_body(form).decode()) == list(form.items())
