"""SMS segment maths as a table: plain ASCII, GSM-7 extension characters, Hindi, emoji, bounds."""

from __future__ import annotations

import pytest

from providers.sms import measure, not_gsm7, to_gsm7


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("Your order #1001 is confirmed.", "GSM-7", 30, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count twice
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 152 + "€", "GSM-7", 154, 1),
        ("a" * 152 + "€" + "a" * 7, "GSM-7", 161, 2),
        # An extension character is not split: 152 + 2 does not fit 153, it opens segment 2.
        ("a" * 152 + "€" + "a" * 153, "GSM-7", 307, 3),
        ("Price: $10 {promo} [x] ~ | ^ \\", "GSM-7", 38, 1),
        ("आपका ऑर्डर पक्का हो गया", "UCS-2", 23, 1),
        ("क" * 70, "UCS-2", 70, 1),
        ("क" * 71, "UCS-2", 71, 2),
        ("क" * 134, "UCS-2", 134, 2),
        ("क" * 135, "UCS-2", 135, 3),
        ("Total ₹499", "UCS-2", 10, 1),  # the rupee sign is not GSM-7
        ("“quoted”", "UCS-2", 8, 1),  # nor are curly quotes
        ("👍" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 units
        ("👍" * 36, "UCS-2", 72, 2),
        ("a" * 66 + "👍" + "a" * 3, "UCS-2", 71, 2),
    ],
)
def test_segments(text, encoding, units, segments):
    shape = measure(text)
    assert (shape.encoding, shape.units, shape.segments) == (encoding, units, segments)
    assert shape.unicode is (encoding == "UCS-2")


@pytest.mark.parametrize(
    ("text", "chosen", "encoding", "units", "segments"),
    [
        # The merchant's choice decides, not the text: unicode is UCS-2 even for plain text...
        ("Your order #1001 is confirmed.", "unicode", "UCS-2", 30, 1),
        ("a" * 71, "unicode", "UCS-2", 71, 2),
        ("€" * 10, "unicode", "UCS-2", 10, 1),
        # ...and plain is GSM-7, where a character outside it is one septet (the provider's
        # stand-in for it).
        ("a" * 160, "plain", "GSM-7", 160, 1),
        ("Total ₹499", "plain", "GSM-7", 10, 1),
        ("€" * 81, "plain", "GSM-7", 162, 2),
        # No choice: the text decides, as before.
        ("Total ₹499", "", "UCS-2", 10, 1),
    ],
)
def test_segments_in_the_chosen_encoding(text, chosen, encoding, units, segments):
    shape = measure(text, chosen)
    assert (shape.encoding, shape.units, shape.segments) == (encoding, units, segments)
    assert shape.unicode is (encoding == "UCS-2")


@pytest.mark.parametrize(
    ("text", "outside"),
    [
        ("Order #1001 of $10 {ok} [x] €5", ""),
        ("Total ₹499, “quoted” — ok", "₹“”—"),
        ("आप", "आप"),
        ("₹₹", "₹"),
    ],
)
def test_characters_outside_gsm7_in_order_of_appearance(text, outside):
    assert "".join(not_gsm7(text)) == outside


def test_plain_text_stands_in_for_characters_outside_gsm7():
    assert to_gsm7("Pay\u00a0₹1,250 for “Tea” – ok") == 'Pay ?1,250 for "Tea" - ok'
    assert to_gsm7("Order #1001 €5 {x}") == "Order #1001 €5 {x}"
