"""The Exotel provider against the fake Exotel over real HTTP on loopback: SMS and flow-call
forms, DND and the other error classes, the DND lookup, and the callback parsers on captured and
fake-sent callbacks."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import (
    DND,
    INVALID_NUMBER,
    TEMPLATE_NOT_APPROVED,
    UNAUTHORIZED,
    AccountCheck,
    CallRequest,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SmsRequest,
)
from providers.events import CallStatus, KeypadInput, MessageStatus, MissedCall
from providers.exotel import (
    ExotelClient,
    parse_call_status,
    parse_passthru,
    parse_sms_status,
)
from providers.sandbox.exotel import FakeExotel

SID = "ordertalk1"
API_KEY = "test-exotel-key"
API_TOKEN = "test-exotel-token"
CUSTOMER = "+919812345678"
EXOPHONE = "08047113155"
HOOKS = "https://ordertalk.example/webhooks/exotel/7.abc"
SID_32_HEX = re.compile(r"[0-9a-f]{32}")

# Passthru query strings captured from Exotel (wire-formats.md section 3.3); the Gather applet
# before the outbound one put the customer's key in `digits`, wrapped in double quotes.
CAPTURED_OUTBOUND = (
    "CallSid=5979a54734e3bf7505cb8e41b96e1917&CallFrom=09494865411&CallTo=08047113155"
    "&Direction=outbound-dial&Created=Tue%2C+07+Jan+2025+15%3A51%3A06&DialWhomNumber="
    "&HangupLatencyStartTimeExocc=&HangupLatencyStartTime=&From=09494865411&To=09513886363"
    "&CustomField=7e9095cd-1d2b&CurrentTime=2025-01-07+15%3A51%3A06&digits=%221%22"
)
CAPTURED_MISSED_CALL = (
    "CallSid=9953099079d70b89bbc1aa43ae6d1893&CallFrom=09901320691&CallTo=08069891522"
    "&Direction=incoming&Created=Tue%2C+03+Sep+2024+11%3A44%3A54&DialWhomNumber="
    "&CallType=call-attempt&DialCallDuration=0&StartTime=2024-09-03+11%3A44%3A54"
    "&EndTime=1970-01-01+05%3A30%3A00"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeExotel]:
    exotel = FakeExotel(account_sid=SID, api_key=API_KEY, api_token=API_TOKEN)
    await exotel.start()
    yield exotel
    await exotel.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession, fake: FakeExotel) -> ExotelClient:
    return ExotelClient(
        http, account_sid=SID, api_key=API_KEY, api_token=API_TOKEN, api_url=fake.base_url
    )


@dataclass
class Hit:
    method: str
    kind: str
    query_string: str
    query: dict[str, str]
    content_type: str
    body: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Hit]]]:
    """Our callback paths on loopback, keeping what each callback carried."""
    hits: list[Hit] = []

    async def handle(request: web.Request) -> web.Response:
        hit = Hit(
            request.method,
            request.match_info["kind"],
            request.raw_path.partition("?")[2],
            dict(request.query),
            request.content_type,
        )
        if request.method == "POST":
            if request.content_type == "application/json":
                hit.body = await request.json()
            else:
                hit.body = {key: str(value) for key, value in (await request.post()).items()}
        hits.append(hit)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/webhooks/exotel/{token}/{kind}", handle)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/webhooks/exotel/7.abc")), hits
    await server.close()


def sms(**changes: Any) -> SmsRequest:
    fields: dict[str, Any] = {
        "to": CUSTOMER,
        "body": "Your order #1001 of Rs 1499 is confirmed. - Demo Store",
        "sender": "DEMOST",
        "status_callback": f"{HOOKS}/sms-status",
        "dlt_entity_id": "1201159218470564718",
        "dlt_template_id": "1207161234567890123",
        "reference": "order-1001",
    }
    return SmsRequest(**(fields | changes))


def call(**changes: Any) -> CallRequest:
    fields: dict[str, Any] = {
        "to": CUSTOMER,
        "caller_id": EXOPHONE,
        "flow_id": "512345",
        "status_callback": f"{HOOKS}/call-status",
        "reference": "order-1001",
        "timeout_seconds": 40,
    }
    return CallRequest(**(fields | changes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def expect_error(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    return caught.value


# Base URL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "base_url"),
    [
        ({}, "https://api.exotel.com"),
        ({"subdomain": "api.in.exotel.com"}, "https://api.in.exotel.com"),
        (
            {"subdomain": "api.in.exotel.com", "api_url": "http://127.0.0.1:8765/"},
            "http://127.0.0.1:8765",
        ),
    ],
)
async def test_base_url(http, options, base_url):
    exotel = ExotelClient(http, account_sid=SID, api_key=API_KEY, api_token=API_TOKEN, **options)
    assert exotel.base_url == base_url
    assert exotel.name == "exotel"


# SMS ----------------------------------------------------------------------------------------


async def test_send_sms_posts_exotels_form(client, fake):
    receipt = await client.send_sms(sms())
    assert fake.sms == [
        {
            "From": "DEMOST",
            "To": CUSTOMER,
            "Body": "Your order #1001 of Rs 1499 is confirmed. - Demo Store",
            "EncodingType": "plain",
            "SmsType": "transactional",
            "DltEntityId": "1201159218470564718",
            "DltTemplateId": "1207161234567890123",
            "StatusCallback": f"{HOOKS}/sms-status",
            "CustomField": "order-1001",
        }
    ]
    assert SID_32_HEX.fullmatch(receipt.provider_message_id)
    assert receipt.status == "queued"


async def test_unicode_sms_leaves_out_unset_fields(client, fake):
    request = SmsRequest(
        to=CUSTOMER, body="आपका ऑर्डर पक्का हो गया ₹1499", sender="DEMOST", unicode=True
    )
    await client.send_sms(request)
    assert fake.sms == [
        {
            "From": "DEMOST",
            "To": CUSTOMER,
            "Body": "आपका ऑर्डर पक्का हो गया ₹1499",
            "EncodingType": "unicode",
            "SmsType": "transactional",
        }
    ]


async def test_rejected_dlt_template_is_permanent(client, fake):
    fake.reject_template("1207161234567890123", detailed_code=23183)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, TEMPLATE_NOT_APPROVED)
    assert "23183" in str(error)
    assert "DLT_TEMPLATE_ID_INACTIVE" in str(error)
    assert (await client.send_sms(sms(dlt_template_id="1207169999999999999"))).status == "queued"


# Calls --------------------------------------------------------------------------------------


async def test_place_call_connects_the_customer_to_the_flow(client, fake):
    receipt = await client.place_call(call())
    assert fake.calls == [
        {
            "From": CUSTOMER,
            "CallerId": EXOPHONE,
            "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/512345",
            "CallType": "trans",
            "TimeOut": "40",
            "StatusCallback": f"{HOOKS}/call-status",
            "StatusCallbackEvents[0]": "terminal",
            "CustomField": "order-1001",
        }
    ]
    assert SID_32_HEX.fullmatch(receipt.provider_call_id)
    assert receipt.status == "in-progress"


async def test_call_without_flow_is_refused_before_exotel(client, fake):
    error = await expect_error(client.place_call(call(flow_id="")))
    assert (error.retryable, error.code) == (False, "NO_FLOW")
    assert fake.calls == []


async def test_dnd_number_is_its_own_outcome(client, fake):
    fake.mark_dnd("09812345678")
    error = await expect_error(client.place_call(call()))
    assert (error.retryable, error.code) == (False, DND)
    assert (await client.place_call(call(to="+919876543210"))).status == "in-progress"


async def test_is_dnd_reads_number_metadata(client, fake):
    fake.mark_dnd(CUSTOMER)
    assert await client.is_dnd(CUSTOMER) is True
    assert await client.is_dnd("+919876543210") is False
    assert fake.lookups == ["9812345678", "9876543210"]
    assert await client.is_dnd("+14155552671") is False
    assert len(fake.lookups) == 2


async def test_is_dnd_of_a_non_number(client, fake):
    error = await expect_error(client.is_dnd("12345"))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)
    assert fake.lookups == []


# Errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_is_retryable(client, fake, status):
    fake.fail_next(1, status=status)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, f"HTTP_{status}", None)
    assert (await client.send_sms(sms())).status == "queued"


async def test_throttling_honours_retry_after(client, fake):
    fake.fail_next(1, status=429, retry_after=7)
    error = await expect_error(client.place_call(call()))
    assert (error.retryable, error.code, error.retry_after) == (True, "THROTTLED", 7.0)


async def test_retry_after_as_http_date(client, fake):
    fake.fail_next(1, status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.retry_after) == (True, 0.0)


@pytest.mark.parametrize(
    ("status", "message", "code", "expected"),
    [
        (403, "Number 09812345678 is in NDNC registry", "", DND),
        (400, "Cannot call a Do Not Disturb number", "", DND),
        (403, "Call failed", "DND_NUMBER", DND),
        (400, "", "23005", DND),
        (403, "Insufficient balance to send the SMS", "", UNAUTHORIZED),
        (403, "Account is not active", "", UNAUTHORIZED),
        (400, "Invalid Recipient [12345]", "", INVALID_NUMBER),
        (400, "", "23185", TEMPLATE_NOT_APPROVED),
        (400, "ENTITY_BLOCKED_BY_DLT", "23081", "EXOTEL_23081"),
        (400, "Invalid Parameters", "", "HTTP_400"),
        (402, "Plan limit exceeded", "", "HTTP_402"),
    ],
)
async def test_refusals_are_permanent_and_classified(
    client, fake, status, message, code, expected
):
    fake.fail_next(1, status=status, message=message, code=code)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, expected)
    assert message in str(error)


@pytest.mark.parametrize(
    "body",
    [
        '{"TwilioResponse": {"RestException": {"Status": 403, "Message": "Number is DND"}}}',
        '{"RestException": {"status": 403, "message": "Number is DND", "code": 403}}',
        "<TwilioResponse><RestException><Status>403</Status>"
        "<Message>Number is DND</Message></RestException></TwilioResponse>",
        "Number is DND",
    ],
    ids=["wrapped-json", "lowercase-keys", "xml", "plain-text"],
)
async def test_dnd_refusal_in_other_shapes(client, fake, body):
    fake.fail_next(1, status=403, body=body)
    error = await expect_error(client.place_call(call()))
    assert (error.retryable, error.code) == (False, DND)


async def test_bad_credentials_are_unauthorized(http, fake):
    wrong = ExotelClient(
        http, account_sid=SID, api_key=API_KEY, api_token="wrong", api_url=fake.base_url
    )
    error = await expect_error(wrong.send_sms(sms()))
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert "Invalid API Key or Token" in str(error)
    assert fake.sms == []


async def test_unknown_account_sid_is_unauthorized(http, fake):
    other = ExotelClient(
        http, account_sid="other1", api_key=API_KEY, api_token=API_TOKEN, api_url=fake.base_url
    )
    error = await expect_error(other.place_call(call()))
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)


async def test_unreachable_exotel_is_retryable(http):
    exotel = ExotelClient(
        http,
        account_sid=SID,
        api_key=API_KEY,
        api_token=API_TOKEN,
        api_url=f"http://127.0.0.1:{free_port()}",
    )
    error = await expect_error(exotel.send_sms(sms()))
    assert (error.retryable, error.code) == (True, "CONNECTION")


async def test_timeout_is_retryable(http, fake):
    fake.stall_next(1)
    slow = ExotelClient(
        http,
        account_sid=SID,
        api_key=API_KEY,
        api_token=API_TOKEN,
        api_url=fake.base_url,
        timeout_seconds=0.2,
    )
    error = await expect_error(slow.place_call(call()))
    assert (error.retryable, error.code) == (True, "TIMEOUT")


async def test_answer_that_is_not_json_is_a_bad_response(client, fake):
    fake.fail_next(1, status=200, body="<html>maintenance</html>")
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, "BAD_RESPONSE")


# Account check ------------------------------------------------------------------------------


async def expect_refusal(client: ExotelClient, numbers: list[str]) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        await client.check_account(numbers)
    return caught.value


def account(http: aiohttp.ClientSession, fake: FakeExotel, **credentials: str) -> ExotelClient:
    values = {"account_sid": SID, "api_key": API_KEY, "api_token": API_TOKEN} | credentials
    return ExotelClient(http, api_url=fake.base_url, **values)


async def test_check_account_reports_the_exophones_capabilities(client, fake):
    fake.add_exophone("08047112345", sms=True, voice=True)
    fake.add_exophone("+918047112346", sms=False, voice=True)
    fake.add_exophone(EXOPHONE)

    check = await client.check_account(["918047112346", "08047112345", "+918047112345"])

    assert check == AccountCheck(
        name="",
        numbers=(
            NumberCapabilities("+918047112346", sms=False, voice=True),
            NumberCapabilities("+918047112345", sms=True, voice=True),
            NumberCapabilities("+918047112345", sms=True, voice=True),
        ),
    )


async def test_check_account_refuses_a_wrong_api_token(http, fake):
    fake.add_exophone(EXOPHONE)
    refused = await expect_refusal(account(http, fake, api_token="wrong"), [EXOPHONE])
    assert (refused.field, refused.reason) == (
        "api_token",
        "Authentication failed. Invalid API Key or Token.",
    )


async def test_check_account_refuses_a_sid_the_credentials_are_not_for(http, fake):
    refused = await expect_refusal(account(http, fake, account_sid="other1"), [])
    assert (refused.field, refused.reason) == (
        "account_sid",
        "Account SID is invalid or does not match credentials.",
    )


async def test_check_account_refuses_an_account_exotel_does_not_know(client, fake):
    fake.fail_next(1, status=404, message="Account not found", code="NOT_FOUND")
    refused = await expect_refusal(client, [])
    assert (refused.field, refused.reason) == ("account_sid", "Account not found")


async def test_check_account_refuses_a_number_that_is_not_an_exophone(client, fake):
    fake.add_exophone(EXOPHONE)
    refused = await expect_refusal(client, [EXOPHONE, "08047110000"])
    assert (refused.field, refused.reason) == (
        "numbers.1",
        "08047110000 is not an ExoPhone of this Exotel account",
    )


async def test_check_account_refuses_what_is_not_a_phone_number(client):
    refused = await expect_refusal(client, ["exophone"])
    assert (refused.field, refused.reason) == ("numbers.0", "exophone is not a phone number")


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_check_account_transient_failure_is_retryable(client, fake, status):
    fake.fail_next(1, status=status)
    error = await expect_error(client.check_account([EXOPHONE]))
    assert error.retryable


# Parsers ------------------------------------------------------------------------------------


def query(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


@pytest.mark.parametrize(
    ("params", "event"),
    [
        (
            query(CAPTURED_OUTBOUND),
            KeypadInput("exotel", "5979a54734e3bf7505cb8e41b96e1917", "1", "7e9095cd-1d2b"),
        ),
        (
            query(CAPTURED_MISSED_CALL),
            MissedCall(
                "exotel", "9953099079d70b89bbc1aa43ae6d1893", "+919901320691", "+918069891522"
            ),
        ),
        (
            query(CAPTURED_OUTBOUND.replace("&digits=%221%22", "")),
            KeypadInput("exotel", "5979a54734e3bf7505cb8e41b96e1917", "", "7e9095cd-1d2b"),
        ),
        (
            query(CAPTURED_OUTBOUND.replace("%221%22", "%22%22")),
            KeypadInput("exotel", "5979a54734e3bf7505cb8e41b96e1917", "", "7e9095cd-1d2b"),
        ),
        (
            query(CAPTURED_OUTBOUND.replace("%221%22", "%2212%23%22")),
            KeypadInput("exotel", "5979a54734e3bf7505cb8e41b96e1917", "12#", "7e9095cd-1d2b"),
        ),
        (
            # An unencoded "+" of an E.164 number arrives as a space.
            query(
                CAPTURED_MISSED_CALL.replace("09901320691", "+919901320691").replace(
                    "08069891522", "918069891522"
                )
            ),
            MissedCall(
                "exotel", "9953099079d70b89bbc1aa43ae6d1893", "+919901320691", "+918069891522"
            ),
        ),
    ],
    ids=["outbound-digit", "missed-call", "no-digits", "empty-digits", "several-keys", "e164"],
)
def test_parse_passthru(params, event):
    assert parse_passthru(params) == event


@pytest.mark.parametrize(
    ("params", "event"),
    [
        (
            {
                "CallSid": "b6cfaf5a53a8c8e6f5e2f4ad4c9e1f1a",
                "DateUpdated": "2026-02-01 10:31:05",
                "Status": "completed",
                "RecordingUrl": "",
                "EventType": "terminal",
                "ConversationDuration": "0",
                "Direction": "outbound-api",
                "CustomField": "order-1001",
            },
            CallStatus("exotel", "b6cfaf5a53a8c8e6f5e2f4ad4c9e1f1a", "completed", 0, "order-1001"),
        ),
        (
            {
                "CallSid": "80bfbec2d78bbbf10fb851f4fa165211",
                "DateUpdated": "2024-01-15 14:30:45",
                "Status": "no-answer",
                "RecordingUrl": None,
            },
            CallStatus("exotel", "80bfbec2d78bbbf10fb851f4fa165211", "no-answer", 0, ""),
        ),
        (
            {
                "CallSid": "55cd271a8e90cf3f3d9d85e06f56189g",
                "Status": "completed",
                "ConversationDuration": 0,
                "Duration": 11,
                "RecordingUrl": None,
                "CustomField": "order-7",
                "Legs": [{"Number": "08167443199", "OnCallDuration": 11}],
            },
            CallStatus("exotel", "55cd271a8e90cf3f3d9d85e06f56189g", "completed", 11, "order-7"),
        ),
        (
            {"CallSid": "a1", "Status": "busy", "DialCallDuration": "4"},
            CallStatus("exotel", "a1", "busy", 4, ""),
        ),
        (
            {"CallSid": "a1", "Status": "failed", "ConversationDuration": 3.0},
            CallStatus("exotel", "a1", "failed", 3, ""),
        ),
    ],
    ids=["form-terminal", "json-default", "json-terminal", "dial-duration", "float-seconds"],
)
def test_parse_call_status(params, event):
    assert parse_call_status(params) == event


@pytest.mark.parametrize(
    ("params", "event"),
    [
        (
            {
                "SmsSid": "s1",
                "Status": "sent",
                "DetailedStatus": "DELIVERED_TO_HANDSET",
                "DetailedStatusCode": "20005",
            },
            MessageStatus("exotel", "s1", "delivered"),
        ),
        (
            {
                "SmsSid": "s1",
                "Status": "sent",
                "DetailedStatus": "DELIVERED_TO_OPERATOR",
                "DetailedStatusCode": "20006",
            },
            MessageStatus("exotel", "s1", "sent"),
        ),
        ({"SmsSid": "s1", "Status": "delivered"}, MessageStatus("exotel", "s1", "delivered")),
        (
            {
                "SmsSid": "s1",
                "Status": "failed_dnd",
                "DetailedStatus": "",
                "DetailedStatusCode": "",
            },
            MessageStatus("exotel", "s1", "failed", DND, "failed_dnd"),
        ),
        (
            {
                "SmsSid": "s1",
                "Status": "failed",
                "DetailedStatus": "FAILED_DND",
                "DetailedStatusCode": "23005",
            },
            MessageStatus("exotel", "s1", "failed", DND, "FAILED_DND"),
        ),
        (
            {
                "SmsSid": "s1",
                "Status": "failed",
                "DetailedStatus": "DLT_TEMPLATE_DOES_NOT_MATCH",
                "DetailedStatusCode": "23185",
            },
            MessageStatus("exotel", "s1", "failed", "23185", "DLT_TEMPLATE_DOES_NOT_MATCH"),
        ),
        (
            {"SmsSid": "s1", "Status": "expired", "DetailedStatusCode": "24990"},
            MessageStatus("exotel", "s1", "undelivered", "24990", ""),
        ),
        ({"SmsSid": "s1", "Status": "queued"}, MessageStatus("exotel", "s1", "queued")),
        ({"SmsSid": "s1", "Status": "sending"}, MessageStatus("exotel", "s1", "queued")),
        ({"SmsSid": "s1", "Status": "submitted"}, MessageStatus("exotel", "s1", "sent")),
    ],
    ids=[
        "handset",
        "operator",
        "delivered",
        "failed-dnd",
        "dnd-code",
        "dlt",
        "expired",
        "queued",
        "sending",
        "submitted",
    ],
)
def test_parse_sms_status(params, event):
    assert parse_sms_status(params) == event


@pytest.mark.parametrize(
    ("parse", "params", "field_name"),
    [
        (parse_passthru, query(CAPTURED_OUTBOUND.replace("CallSid=", "X=")), "CallSid"),
        (parse_passthru, query(CAPTURED_OUTBOUND.replace("Direction=", "X=")), "Direction"),
        (parse_passthru, query(CAPTURED_OUTBOUND.replace("%221%22", "%22one%22")), "digits"),
        (parse_passthru, query(CAPTURED_MISSED_CALL.replace("09901320691", "12345")), "CallFrom"),
        (parse_passthru, query(CAPTURED_MISSED_CALL.replace("CallTo=", "X=")), "CallTo"),
        (parse_passthru, {"CallSid": ["a"], "Direction": "incoming"}, "CallSid"),
        (parse_call_status, {"CallSid": "a1", "Status": "exploded"}, "Status"),
        (parse_call_status, {"Status": "completed"}, "CallSid"),
        (
            parse_call_status,
            {"CallSid": "a1", "Status": "completed", "Duration": "11s"},
            "Duration",
        ),
        (parse_call_status, {"CallSid": "a1", "Status": "busy", "Duration": -1}, "Duration"),
        (parse_call_status, {"CallSid": "a1", "Status": "busy", "CustomField": {}}, "CustomField"),
        (parse_sms_status, {"Status": "sent"}, "SmsSid"),
        (parse_sms_status, {"SmsSid": "s1", "Status": "lost"}, "Status"),
        (parse_sms_status, {"SmsSid": "s1"}, "Status"),
    ],
)
def test_malformed_callback_names_the_field(parse, params, field_name):
    with pytest.raises(ValueError, match=f"^{re.escape(field_name)}: "):
        parse(params)


CALLBACK_KEYS = st.sampled_from(
    [
        "CallSid",
        "CallFrom",
        "CallTo",
        "Direction",
        "digits",
        "CustomField",
        "Status",
        "Duration",
        "ConversationDuration",
        "DialCallDuration",
        "SmsSid",
        "DetailedStatus",
        "DetailedStatusCode",
    ]
)
VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(CALLBACK_KEYS, VALUES | st.lists(VALUES, max_size=2), max_size=8))
def test_parsers_raise_only_value_error(params):
    for parse in (parse_passthru, parse_call_status, parse_sms_status):
        with contextlib.suppress(ValueError):
            parse(params)


# Callbacks sent by the fake -----------------------------------------------------------------


async def test_passthru_keypad_callback(fake, receiver):
    url, hits = receiver
    status, body = await fake.passthru(
        f"{url}/passthru",
        call_sid="5979a54734e3bf7505cb8e41b96e1917",
        call_from=CUSTOMER,
        call_to=EXOPHONE,
        direction="outbound-dial",
        digits="2",
        custom_field="order-1001",
    )
    assert (status, body) == (200, "OK")
    [hit] = hits
    assert (hit.method, hit.kind) == ("GET", "passthru")
    assert "digits=%222%22" in hit.query_string
    assert (hit.query["CallFrom"], hit.query["CallTo"]) == ("09812345678", EXOPHONE)
    assert (hit.query["Direction"], hit.query["digits"]) == ("outbound-dial", '"2"')
    assert parse_passthru(hit.query) == KeypadInput(
        "exotel", "5979a54734e3bf7505cb8e41b96e1917", "2", "order-1001"
    )


async def test_passthru_missed_call_callback(fake, receiver):
    url, hits = receiver
    await fake.passthru(
        f"{url}/passthru",
        call_sid="9953099079d70b89bbc1aa43ae6d1893",
        call_from="+919901320691",
        call_to="+918069891522",
        direction="incoming",
    )
    [hit] = hits
    assert hit.method == "GET"
    assert (hit.query["CallFrom"], hit.query["CallTo"]) == ("09901320691", "08069891522")
    assert (hit.query["CallType"], hit.query["EndTime"]) == ("call-attempt", "1970-01-01 05:30:00")
    assert "digits" not in hit.query
    assert parse_passthru(hit.query) == MissedCall(
        "exotel", "9953099079d70b89bbc1aa43ae6d1893", "+919901320691", "+918069891522"
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
async def test_call_status_callback(client, fake, receiver, as_json):
    url, hits = receiver
    receipt = await client.place_call(call(status_callback=f"{url}/call-status"))
    status, _ = await fake.call_status(
        f"{url}/call-status",
        call_sid=receipt.provider_call_id,
        status="completed",
        duration=23,
        as_json=as_json,
    )
    assert status == 200
    [hit] = hits
    assert (hit.method, hit.kind) == ("POST", "call-status")
    expected_type = "application/json" if as_json else "multipart/form-data"
    assert hit.content_type == expected_type
    assert hit.body["EventType"] == "terminal"
    assert hit.body["From"] == "09812345678"
    assert parse_call_status(hit.body) == CallStatus(
        "exotel", receipt.provider_call_id, "completed", 23, "order-1001"
    )


async def test_sms_status_callback(client, fake, receiver):
    url, hits = receiver
    receipt = await client.send_sms(sms(status_callback=f"{url}/sms-status"))
    await fake.sms_status(
        f"{url}/sms-status",
        sms_sid=receipt.provider_message_id,
        status="failed",
        detailed_status="DLT_TEMPLATE_NOT_FOUND",
        detailed_status_code="23182",
    )
    [hit] = hits
    assert (hit.method, hit.content_type) == ("POST", "application/x-www-form-urlencoded")
    assert (hit.body["To"], hit.body["CustomField"]) == ("09812345678", "order-1001")
    assert parse_sms_status(hit.body) == MessageStatus(
        "exotel", receipt.provider_message_id, "failed", "23182", "DLT_TEMPLATE_NOT_FOUND"
    )
