"""The Twilio provider against the fake Twilio over real HTTP on loopback: sends and calls,
error classes, template lookup, callback signatures, callback parsers and the IVR's TwiML."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import MultiDict

from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    TEMPLATE_NOT_APPROVED,
    UNAUTHORIZED,
    AccountCheck,
    Button,
    CallRequest,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SmsRequest,
    TemplateInfo,
    WhatsAppButtons,
    WhatsAppTemplate,
)
from providers.events import CallStatus, InboundMessage, KeypadInput, MessageStatus
from providers.sandbox.twilio import FakeTwilio
from providers.twilio import (
    OUTSIDE_SESSION_WINDOW,
    TwilioClient,
    ivr_goodbye,
    ivr_prompt,
    parse_call_status,
    parse_gather,
    parse_inbound_message,
    parse_message_status,
    verify_signature,
)

CUSTOMER = "+919876543210"
SMS_FROM = "+14155550100"
WHATSAPP_FROM = "+14155238886"
CONTENT_SID = "HX" + "ab" * 16
PUBLIC = "https://ordertalk.example/webhooks/twilio"
SID_PATTERN = r"[0-9a-f]{32}"

Received = list[tuple[str, MultiDict[str], str | None]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    twilio = FakeTwilio()
    await twilio.start()
    twilio.add_content(CONTENT_SID, "Order {{1}} of {{2}}: confirm?", "approved", name="cod")
    yield twilio
    await twilio.close()


@pytest.fixture
async def client(fake: FakeTwilio) -> AsyncIterator[TwilioClient]:
    twilio = TwilioClient(
        fake.account_sid,
        fake.auth_token,
        fake.base_url,
        whatsapp_from=WHATSAPP_FROM,
        status_callback=f"{PUBLIC}/status",
    )
    yield twilio
    await twilio.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Received]]:
    """An app endpoint on loopback that keeps each callback's URL, form and signature."""
    inbox: Received = []

    async def handle(request: web.Request) -> web.Response:
        form = MultiDict((key, str(value)) for key, value in (await request.post()).items())
        inbox.append((str(request.url), form, request.headers.get("X-Twilio-Signature")))
        return web.Response(text="<Response/>", content_type="application/xml")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/webhooks/twilio")), inbox
    await server.close()


async def expect_error(call: Awaitable[Any]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    return caught.value


def sms(to: str = CUSTOMER, status_callback: str = f"{PUBLIC}/status") -> SmsRequest:
    return SmsRequest(
        to=to, body="Your OTP is 4242", sender=SMS_FROM, status_callback=status_callback
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Sends and calls ----------------------------------------------------------------------------


async def test_send_sms(client, fake):
    receipt = await client.send_sms(sms())
    assert re.fullmatch("SM" + SID_PATTERN, receipt.provider_message_id)
    assert receipt.status == "queued"
    assert fake.messages == [
        {
            "To": CUSTOMER,
            "From": SMS_FROM,
            "Body": "Your OTP is 4242",
            "StatusCallback": f"{PUBLIC}/status",
        }
    ]


async def test_send_sms_without_status_callback(client, fake):
    await client.send_sms(sms(status_callback=""))
    assert "StatusCallback" not in fake.messages[0]


async def test_send_whatsapp_template(client, fake):
    request = WhatsAppTemplate(to=CUSTOMER, template_id=CONTENT_SID, params=("#1001", "₹1,499"))
    receipt = await client.send_template(request)
    assert re.fullmatch("SM" + SID_PATTERN, receipt.provider_message_id)
    [sent] = fake.messages
    assert json.loads(sent.pop("ContentVariables")) == {"1": "#1001", "2": "₹1,499"}
    assert sent == {
        "To": f"whatsapp:{CUSTOMER}",
        "From": f"whatsapp:{WHATSAPP_FROM}",
        "ContentSid": CONTENT_SID,
        "StatusCallback": f"{PUBLIC}/status",
    }


async def test_whatsapp_buttons_degrade_to_numbered_text(client, fake):
    request = WhatsAppButtons(
        to=CUSTOMER,
        text="Confirm order #1001?",
        header="Demo Store",
        buttons=(Button("confirm:1001", "Confirm"), Button("cancel:1001", "Cancel")),
    )
    await client.send_buttons(request)
    [sent] = fake.messages
    assert sent["Body"] == "Demo Store\nConfirm order #1001?\n\n1. Confirm\n2. Cancel"
    assert (sent["To"], sent["From"]) == (f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP_FROM}")
    assert "ContentSid" not in sent


async def test_whatsapp_needs_a_sender(fake):
    unconfigured = TwilioClient(fake.account_sid, fake.auth_token, fake.base_url)
    try:
        error = await expect_error(unconfigured.send_buttons(WhatsAppButtons(CUSTOMER, "Hi")))
    finally:
        await unconfigured.aclose()
    assert (error.retryable, error.code) == (False, "NOT_CONFIGURED")
    assert fake.messages == []


async def test_place_call(client, fake):
    request = CallRequest(
        to=CUSTOMER,
        caller_id=SMS_FROM,
        answer_url=f"{PUBLIC}/voice",
        status_callback=f"{PUBLIC}/voice/status",
        timeout_seconds=25,
    )
    receipt = await client.place_call(request)
    assert re.fullmatch("CA" + SID_PATTERN, receipt.provider_call_id)
    assert receipt.status == "queued"
    assert fake.calls == [
        {
            "To": CUSTOMER,
            "From": SMS_FROM,
            "Url": f"{PUBLIC}/voice",
            "StatusCallback": f"{PUBLIC}/voice/status",
            "StatusCallbackEvent": "completed",
            "Timeout": "25",
        }
    ]


async def test_template_status(client, fake):
    assert await client.template(CONTENT_SID) == TemplateInfo(
        template_id=CONTENT_SID,
        name="cod",
        status="APPROVED",
        text="Order {{1}} of {{2}}: confirm?",
        language="en",
    )
    fake.add_content(CONTENT_SID, "Order {{1}}", "pending", name="cod", language="hi")
    info = await client.template(CONTENT_SID)
    assert (info.status, info.text, info.language) == ("PENDING", "Order {{1}}", "hi")


async def test_unknown_template_lookup_is_not_retryable(client):
    error = await expect_error(client.template("HX" + "00" * 16))
    assert (error.retryable, error.code) == (False, "20404")


# Errors -------------------------------------------------------------------------------------


async def test_server_error_is_retryable(client, fake):
    fake.fail_next(1, status=503)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, "HTTP_503", None)
    assert (await client.send_sms(sms())).status == "queued"
    assert len(fake.messages) == 2


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 7.0), (None, None)])
async def test_throttling_is_retryable_after_retry_after(client, fake, retry_after, expected):
    fake.fail_next(1, status=429, retry_after=retry_after)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, "THROTTLED", expected)
    assert "20429" in str(error)


async def test_opted_out_recipient(client, fake):
    fake.opt_out(CUSTOMER)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, OPTED_OUT)
    assert "21610" in str(error)


async def test_invalid_number_for_messages_and_calls(client, fake):
    fake.invalid(CUSTOMER)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)
    call = CallRequest(to=CUSTOMER, caller_id=SMS_FROM, answer_url=f"{PUBLIC}/voice")
    error = await expect_error(client.place_call(call))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)


async def test_unknown_content_sid_is_template_not_approved(client):
    request = WhatsAppTemplate(to=CUSTOMER, template_id="HX" + "00" * 16)
    error = await expect_error(client.send_template(request))
    assert (error.retryable, error.code) == (False, TEMPLATE_NOT_APPROVED)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 63016, OUTSIDE_SESSION_WINDOW),
        (400, 21614, INVALID_NUMBER),
        (400, 63003, INVALID_NUMBER),
        (400, 21606, "21606"),
        (403, 20003, UNAUTHORIZED),
    ],
)
async def test_twilio_error_codes(client, fake, status, code, expected):
    fake.fail_next(1, status=status, code=code)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, expected)


async def test_bad_credentials(fake):
    wrong = TwilioClient(fake.account_sid, "not-the-token", fake.base_url)
    try:
        error = await expect_error(wrong.send_sms(sms()))
    finally:
        await wrong.aclose()
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert "Authenticate" in str(error)
    assert fake.messages == []


async def test_unreachable_twilio_is_retryable():
    twilio = TwilioClient("AC" + "0" * 32, "token", f"http://127.0.0.1:{free_port()}")
    try:
        error = await expect_error(twilio.send_sms(sms()))
    finally:
        await twilio.aclose()
    assert (error.retryable, error.code) == (True, "CONNECTION")


async def test_slow_twilio_times_out_retryably():
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/{tail:.*}", stall)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    twilio = TwilioClient("AC" + "0" * 32, "token", str(server.make_url("")), timeout_seconds=0.1)
    try:
        error = await expect_error(twilio.send_sms(sms()))
    finally:
        await twilio.aclose()
        await server.close()
    assert (error.retryable, error.code) == (True, "TIMEOUT")


# Account check ------------------------------------------------------------------------------


async def expect_refusal(client: TwilioClient, numbers: list[str]) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        await client.check_account(numbers)
    return caught.value


async def test_check_account_reports_the_numbers_capabilities(client, fake):
    fake.add_number(SMS_FROM, sms=True, voice=True)
    fake.add_number(WHATSAPP_FROM, sms=True, voice=False, mms=True)
    fake.add_number("+14155550199")

    check = await client.check_account([WHATSAPP_FROM, SMS_FROM])

    assert check == AccountCheck(
        name="My first Twilio account",
        numbers=(
            NumberCapabilities(WHATSAPP_FROM, sms=True, voice=False),
            NumberCapabilities(SMS_FROM, sms=True, voice=True),
        ),
    )


async def test_check_account_without_numbers_checks_the_credentials(client):
    assert await client.check_account([]) == AccountCheck("My first Twilio account", ())


async def test_check_account_refuses_a_wrong_auth_token(fake):
    fake.add_number(SMS_FROM)
    wrong = TwilioClient(fake.account_sid, "not-the-token", fake.base_url)
    try:
        refused = await expect_refusal(wrong, [SMS_FROM])
    finally:
        await wrong.aclose()
    assert (refused.field, str(refused)) == ("auth_token", "Authenticate (Twilio error 20003)")


async def test_check_account_refuses_an_unknown_account(client, fake):
    fake.fail_next(1, status=404, code=20404)
    refused = await expect_refusal(client, [])
    assert (refused.field, refused.reason) == (
        "account_sid",
        "Injected failure (Twilio error 20404)",
    )


@pytest.mark.parametrize("status", ["suspended", "closed"])
async def test_check_account_refuses_an_inactive_account(client, fake, status):
    fake.status = status
    refused = await expect_refusal(client, [])
    assert (refused.field, refused.reason) == ("account_sid", f"the Twilio account is {status}")


async def test_check_account_refuses_a_number_of_another_account(client, fake):
    fake.add_number(SMS_FROM)
    refused = await expect_refusal(client, [SMS_FROM, "+14155550123"])
    assert refused.field == "numbers.1"
    assert refused.reason == "+14155550123 is not a number of this Twilio account"


async def test_check_account_matches_the_whole_number(client, fake):
    # Twilio's PhoneNumber filter also matches numbers that contain the one asked for.
    fake.add_number("+441555501000")
    refused = await expect_refusal(client, ["+41555501000"])
    assert refused.field == "numbers.0"


async def test_check_account_refuses_what_is_not_a_phone_number(client):
    refused = await expect_refusal(client, ["my number"])
    assert (refused.field, refused.reason) == (
        "numbers.0",
        "my number is not an E.164 phone number",
    )


async def test_check_account_server_error_is_retryable(client, fake):
    fake.fail_next(1, status=503)
    with pytest.raises(ProviderError) as caught:
        await client.check_account([SMS_FROM])
    assert (caught.value.retryable, caught.value.code) == (True, "HTTP_503")


# Callback signatures ------------------------------------------------------------------------


async def test_signed_callback_verifies_for_the_exact_url(fake, receiver):
    base, inbox = receiver
    status, _ = await fake.send_inbound(
        f"{base}/messages?shop=7", from_=CUSTOMER, to=SMS_FROM, body="YES"
    )
    assert status == 200
    [(url, form, signature)] = inbox
    assert url == f"{base}/messages?shop=7"
    assert verify_signature(url, form, signature, fake.auth_token)
    assert not verify_signature(f"{base}/messages?shop=8", form, signature, fake.auth_token)
    tampered = MultiDict(form)
    tampered["Body"] = "NO"
    assert not verify_signature(url, tampered, signature, fake.auth_token)
    assert not verify_signature(url, form, signature, "another-token")
    assert not verify_signature(url, form, None, fake.auth_token)
    assert not verify_signature(url, form, "", fake.auth_token)


async def test_forged_callback_fails(fake, receiver):
    base, inbox = receiver
    await fake.send_status(f"{base}/status", "SM" + "1" * 32, "delivered", auth_token="forged")
    [(url, form, signature)] = inbox
    assert not verify_signature(url, form, signature, fake.auth_token)


async def test_callbacks_round_trip_to_events(client, fake, receiver):
    base, inbox = receiver
    call = await client.place_call(
        CallRequest(to=CUSTOMER, caller_id=SMS_FROM, answer_url=f"{base}/voice")
    )
    message = await client.send_sms(sms())
    await fake.post_voice(f"{base}/voice", call.provider_call_id)
    await fake.send_gather(f"{base}/voice/gather", call.provider_call_id, "2")
    await fake.send_gather(f"{base}/voice/gather", call.provider_call_id, "")
    await fake.send_call_status(f"{base}/voice/status", call.provider_call_id, "completed", 42)
    await fake.send_status(f"{base}/status", message.provider_message_id, "failed", "30003")
    await fake.send_inbound(
        f"{base}/messages",
        from_=CUSTOMER,
        to=WHATSAPP_FROM,
        body="Confirm",
        whatsapp=True,
        button_payload="confirm:1001",
    )
    for url, form, signature in inbox:
        assert verify_signature(url, form, signature, fake.auth_token), url
    voice, pressed, silent, ended, failed, reply = (form for _, form, _ in inbox)
    assert (voice["CallSid"], voice["To"]) == (call.provider_call_id, CUSTOMER)
    assert parse_gather(pressed) == KeypadInput("twilio", call.provider_call_id, "2")
    assert parse_gather(silent).digits == ""
    assert parse_call_status(ended) == CallStatus("twilio", call.provider_call_id, "completed", 42)
    assert parse_message_status(failed) == MessageStatus(
        "twilio", message.provider_message_id, "failed", error_code="30003"
    )
    assert parse_inbound_message(reply) == InboundMessage(
        provider="twilio",
        message_id=reply["MessageSid"],
        channel="whatsapp",
        from_phone=CUSTOMER,
        to=WHATSAPP_FROM,
        text="Confirm",
        button="confirm:1001",
    )


# Parsers ------------------------------------------------------------------------------------

SMS_INBOUND = {
    "ToCountry": "US",
    "SmsMessageSid": "SM0123456789abcdef0123456789abcdef",
    "NumMedia": "0",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "SmsStatus": "received",
    "Body": "STOP",
    "To": "+14155550100",
    "NumSegments": "1",
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+919876543210",
    "ApiVersion": "2010-04-01",
}
WHATSAPP_BUTTON = {
    "SmsMessageSid": "SMfedcba9876543210fedcba9876543210",
    "NumMedia": "0",
    "ProfileName": "Asha",
    "MessageType": "button",
    "SmsSid": "SMfedcba9876543210fedcba9876543210",
    "WaId": "919876543210",
    "SmsStatus": "received",
    "Body": "Cancel order",
    "ButtonText": "Cancel order",
    "To": "whatsapp:+14155238886",
    "ButtonPayload": "cancel:1001",
    "NumSegments": "1",
    "MessageSid": "SMfedcba9876543210fedcba9876543210",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "whatsapp:+919876543210",
    "ApiVersion": "2010-04-01",
}
STATUS_CALLBACK = {
    "ErrorCode": "30006",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "SmsStatus": "undelivered",
    "MessageStatus": "undelivered",
    "To": "+919876543210",
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14155550100",
    "ApiVersion": "2010-04-01",
}
CALL_STATUS = {
    "Called": "+919876543210",
    "CallStatus": "no-answer",
    "Duration": "0",
    "CallDuration": "0",
    "CallSid": "CA0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14155550100",
    "To": "+919876543210",
    "Direction": "outbound-api",
    "CallbackSource": "call-progress-events",
    "Timestamp": "Thu, 15 Jan 2026 05:00:00 +0000",
    "SequenceNumber": "0",
    "ApiVersion": "2010-04-01",
}


def test_parse_sms_inbound():
    assert parse_inbound_message(SMS_INBOUND) == InboundMessage(
        provider="twilio",
        message_id="SM0123456789abcdef0123456789abcdef",
        channel="sms",
        from_phone="+919876543210",
        to="+14155550100",
        text="STOP",
    )


@pytest.mark.parametrize(
    ("opt_out_type", "expected"),
    [("STOP", "STOP"), ("start", "START"), ("HELP", "HELP"), ("", ""), ("RESUBSCRIBE", "")],
)
def test_parse_advanced_opt_out_type(opt_out_type, expected):
    params = SMS_INBOUND | {"OptOutType": opt_out_type}
    assert parse_inbound_message(params).opt_out_type == expected


def test_parse_whatsapp_button_reply():
    message = parse_inbound_message(WHATSAPP_BUTTON)
    assert (message.channel, message.from_phone, message.to) == (
        "whatsapp",
        "+919876543210",
        "+14155238886",
    )
    assert (message.text, message.button) == ("Cancel order", "cancel:1001")
    without_payload = {k: v for k, v in WHATSAPP_BUTTON.items() if k != "ButtonPayload"}
    assert parse_inbound_message(without_payload).button == "Cancel order"


def test_parse_status_callback_with_error_code():
    assert parse_message_status(STATUS_CALLBACK) == MessageStatus(
        provider="twilio",
        message_id="SM0123456789abcdef0123456789abcdef",
        status="undelivered",
        error_code="30006",
    )


def test_a_whatsapp_message_outside_the_24_hour_window_fails_by_name():
    params = STATUS_CALLBACK | {"ErrorCode": "63016", "MessageStatus": "failed"}
    assert parse_message_status(params).error_code == OUTSIDE_SESSION_WINDOW


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("accepted", "queued"),
        ("scheduled", "queued"),
        ("queued", "queued"),
        ("sending", "queued"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("failed", "failed"),
        ("undelivered", "undelivered"),
        ("canceled", "failed"),
    ],
)
def test_message_status_names_are_normalised(raw, status):
    params = {**STATUS_CALLBACK, "MessageStatus": raw}
    del params["ErrorCode"]
    parsed = parse_message_status(params)
    assert (parsed.status, parsed.error_code) == (status, "")


@pytest.mark.parametrize(
    ("status", "duration"),
    [("completed", "73"), ("busy", "0"), ("no-answer", "0"), ("failed", "")],
)
def test_parse_call_status(status, duration):
    parsed = parse_call_status({**CALL_STATUS, "CallStatus": status, "CallDuration": duration})
    assert parsed == CallStatus(
        "twilio", "CA0123456789abcdef0123456789abcdef", status, int(duration or 0)
    )


def test_parse_gather_digits_and_none():
    params = {"CallSid": "CA0123456789abcdef0123456789abcdef", "Digits": "1"}
    assert parse_gather(params).digits == "1"
    assert parse_gather({**params, "Digits": ""}).digits == ""
    assert parse_gather({"CallSid": params["CallSid"]}).digits == ""


def _without(params: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k != key}


@pytest.mark.parametrize(
    ("parse", "params", "field"),
    [
        (parse_inbound_message, _without(SMS_INBOUND, "MessageSid"), "MessageSid"),
        (parse_inbound_message, _without(SMS_INBOUND, "From"), "From"),
        (parse_inbound_message, {**SMS_INBOUND, "From": "TWILIO"}, "From"),
        (parse_inbound_message, _without(SMS_INBOUND, "To"), "To"),
        (parse_message_status, _without(STATUS_CALLBACK, "MessageSid"), "MessageSid"),
        (parse_message_status, _without(STATUS_CALLBACK, "MessageStatus"), "MessageStatus"),
        (parse_message_status, {**STATUS_CALLBACK, "MessageStatus": "received"}, "MessageStatus"),
        (parse_call_status, _without(CALL_STATUS, "CallSid"), "CallSid"),
        (parse_call_status, {**CALL_STATUS, "CallStatus": "exploded"}, "CallStatus"),
        (parse_call_status, {**CALL_STATUS, "CallDuration": "1.5"}, "CallDuration"),
        (parse_gather, {"Digits": "1"}, "CallSid"),
    ],
)
def test_malformed_callback_names_the_field(parse, params, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        parse(params)


# TwiML --------------------------------------------------------------------------------------


def test_ivr_prompt_gathers_one_digit():
    action = "https://ordertalk.example/webhooks/twilio/voice/gather?try=1&order=7"
    root = ET.fromstring(
        ivr_prompt("आपका ऑर्डर 1001, ₹1,499. Press 1 & confirm.", language="hi", action_url=action)
    )
    assert root.tag == "Response"
    [gather] = root
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "timeout": "5",
        "action": action,
        "method": "POST",
        "actionOnEmptyResult": "true",
    }
    [say] = gather
    assert (say.tag, say.get("language")) == ("Say", "hi-IN")
    assert say.text == "आपका ऑर्डर 1001, ₹1,499. Press 1 & confirm."


def test_ivr_prompt_in_english_and_unknown_language():
    for language in ("en", "xx"):
        root = ET.fromstring(ivr_prompt("Press 1.", language=language, action_url=PUBLIC))
        assert root.find("Gather/Say").get("language") == "en-IN"


def test_ivr_goodbye_says_and_hangs_up():
    root = ET.fromstring(ivr_goodbye("Thank you. Goodbye.", language="en"))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert (root[0].text, root[0].get("language")) == ("Thank you. Goodbye.", "en-IN")
    assert [child.tag for child in ET.fromstring(ivr_goodbye("", language="hi"))] == ["Hangup"]
