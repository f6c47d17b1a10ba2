"""Every provider's recorded inbound shape (tests/providers/inbound_shapes/) parsed into one
InboundMessage: channel, customer phone in E.164, our number, text, button and opt-out type.
The same files are posted through the real app in tests/web/inbound/test_shapes.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from providers import exotel, gupshup, ringcentral, twilio
from providers.events import InboundMessage

SHAPES = Path(__file__).parent / "inbound_shapes"


def shape(name: str) -> dict[str, Any]:
    """A recorded shape's fields: a form or query as a flat dict, a JSON body as it is."""
    text = (SHAPES / name).read_text()
    if name.endswith(".json"):
        return json.loads(text)
    return dict(parse_qsl(text.strip(), keep_blank_values=True))


def parse(name: str) -> InboundMessage:
    fields = shape(name)
    if name.startswith("twilio"):
        return twilio.parse_inbound_message(fields)
    if name.startswith("exotel"):
        return exotel.parse_inbound_sms(fields)
    if name.startswith("gupshup"):
        [event] = gupshup.parse_callback(fields)
        assert isinstance(event, InboundMessage)
        return event
    [event] = ringcentral.parse_notification(fields)
    return event


EXPECTED = {
    "twilio_sms.form": InboundMessage(
        "twilio",
        "SM5f0a3c9e1b7d4e2fa8c6b1d0e9f7a2c4",
        "sms",
        "+919876543210",
        "+14155550100",
        "Is my order on its way?",
    ),
    "twilio_sms_opt_out_stop.form": InboundMessage(
        "twilio",
        "SM9d2e4b6a8c0f1e3d5b7a9c1e3f5d7b9a",
        "sms",
        "+919876543210",
        "+14155550100",
        "STOP",
        opt_out_type="STOP",
    ),
    "twilio_whatsapp_text.form": InboundMessage(
        "twilio",
        "SM1a3c5e7b9d0f2e4a6c8b0d2f4e6a8c0b",
        "whatsapp",
        "+919876543210",
        "+14155238886",
        "Can I change the address?",
    ),
    "twilio_whatsapp_button.form": InboundMessage(
        "twilio",
        "SMfedcba9876543210fedcba9876543210",
        "whatsapp",
        "+919876543210",
        "+14155238886",
        "Cancel order",
        button="cancel:1001",
    ),
    "exotel_sms_incoming.json": InboundMessage(
        "exotel",
        "2Q08orixl5wTp8Z8upk9Hb3sDcl",
        "sms",
        "+919876543210",
        "+918047112345",
        "Please deliver after 6 pm",
    ),
    "exotel_sms_app.query": InboundMessage(
        "exotel",
        "b3f1c5d2e8a94c07a6d1e2f3a4b5c6d7",
        "sms",
        "+919876543210",
        "+918047112345",
        "STOP",
    ),
    "gupshup_text.json": InboundMessage(
        "gupshup",
        "ABEGkYaYVSEEAhAL3SLAWwHKeKrt6s3FKB0c",
        "whatsapp",
        "+919876543210",
        "DemoStoreApp",
        "When will it arrive?",
    ),
    "gupshup_quick_reply.json": InboundMessage(
        "gupshup",
        "ABEGkYaYVSEEAhBK7dFsTzQmXcS3e0PrqWvW",
        "whatsapp",
        "+919876543210",
        "DemoStoreApp",
        "Confirm",
        button="confirm:1001",
    ),
    "ringcentral_sms.json": InboundMessage(
        "ringcentral",
        "1234567890",
        "sms",
        "+14155550123",
        "+16505550100",
        "Is the parcel still coming?",
    ),
}


def test_every_recorded_shape_is_tested():
    recorded = {path.name for path in SHAPES.iterdir() if path.suffix != ".md"}
    assert recorded == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_shape_parses_to_one_inbound_message(name):
    assert parse(name) == EXPECTED[name]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"Sender": "+919876543210", "ReceivedOn": "08047112345"}, "SmsSid"),
        ({"SmsSid": "a", "Sender": "12", "ReceivedOn": "08047112345"}, "Sender"),
        ({"SmsSid": "a", "From": "09876543210", "Body": "hi"}, "To"),
        ({"SmsSid": "a", "From": "09876543210", "To": "0" * 21}, "To"),
        ({"SmsSid": "a", "From": "09876543210", "To": "56070", "Body": ["hi"]}, "Body"),
        ({"SmsSid": "a", "Direction": "outbound-api", "From": "0", "To": "0"}, "Direction"),
    ],
)
def test_exotel_inbound_sms_names_the_field_it_refuses(fields, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        exotel.parse_inbound_sms(fields)


def test_exotel_inbound_sms_to_a_short_code_keeps_the_code():
    fields = {"SmsSid": "a", "From": "09876543210", "To": "56070", "Body": "hi"}
    assert exotel.parse_inbound_sms(fields).to == "56070"
