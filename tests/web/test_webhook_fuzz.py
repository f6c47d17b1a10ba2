"""Issue 14, item 7: hypothesis fuzzing of every webhook's parser and route.

Parsers get random fields (the real names among others, any text, wrong types) and either
return events that fit the columns they are stored in or raise ValueError naming a field.
Routes get random bytes, wrong content types, broken UTF-8, missing fields and random
parameters, signed where the provider signs: never a 5xx, and a refused request stores
nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from flows.channels.callback_urls import PLATFORM, ringcentral_token, shop_token
from providers import exotel, gupshup, ringcentral, twilio
from providers.events import CallStatus, InboundMessage, KeypadInput, MessageStatus, MissedCall
from providers.shopify.webhooks import parse_delivery
from settings import Settings
from tests.conftest import SECURITY
from tests.web.test_bad_input import stored

PUBLIC_URL = "https://ordertalk.example"
TWILIO_TOKEN = "twilio-auth-token-0123456789"
SHOPIFY_SECRET = "shpss_" + "0123456789abcdef" * 2
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TWILIO_FIELDS = {
    "AccountSid": "AC" + "1" * 32,
    "MessageSid": "SM" + "0" * 32,
    "From": "whatsapp:+919876543210",
    "To": "whatsapp:+14155550100",
    "Body": "1",
    "ButtonPayload": "verify:1:confirm",
    "MessageStatus": "delivered",
    "ErrorCode": "30008",
    "CallSid": "CA" + "0" * 32,
    "CallStatus": "completed",
    "CallDuration": "12",
    "Digits": "1",
}
EXOTEL_FIELDS = {
    "CallSid": "b6cfaf0a2bdbc8dd3b0b1a3fe2aa185a",
    "CallFrom": "09876543210",
    "CallTo": "08047112345",
    "Direction": "outbound-dial",
    "digits": '"1"',
    "CustomField": "v1",
    "Status": "completed",
    "DialCallDuration": "12",
    "SmsSid": "d4d5e2a8b2d4a2a3e2b1c1a1f1e1d1c1",
    "DetailedStatus": "DELIVERED_TO_HANDSET",
    "DetailedStatusCode": "20005",
}
GOOD_VALUES = [
    "+919876543210", "919876543210", "09876543210", "whatsapp:+14155550123", "completed",
    "delivered", "failed", "in-progress", "incoming", "outbound-dial", '"1"', "1", "12",
    "v1", "v99999999999999999999", "SM" + "a" * 32, "0", "-5", "1e9", "",
]  # fmt: skip
text = st.sampled_from(GOOD_VALUES) | st.text(max_size=30) | st.text(min_size=120, max_size=400)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def fields(base: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """A valid-looking `base` with some fields changed, some removed and some added."""
    names = list(base)
    return st.builds(
        lambda changed, removed, added: {
            k: v for k, v in (base | changed | added).items() if k not in removed
        },
        st.dictionaries(st.sampled_from(names), text, max_size=4),
        st.sets(st.sampled_from(names), max_size=3),
        st.dictionaries(st.text(max_size=20), text, max_size=2),
    )


# aiohttp's HTTP parser: the longest request line it reads.
MAX_REQUEST_LINE = 8190
# Column widths the events' fields are stored in (storage/models.py).
ID_MAX, PHONE_MAX, DIGITS_MAX, CODE_MAX = 128, 20, 16, 64


def fits(event: Any) -> bool:
    texts = [value for value in vars(event).values() if isinstance(value, str)]
    if not all(_storable(text) for text in texts):
        return False
    if isinstance(event, InboundMessage):
        return (
            0 < len(event.message_id) <= ID_MAX
            and len(event.from_phone) <= PHONE_MAX
            and len(event.to) <= PHONE_MAX
        )
    if isinstance(event, MessageStatus):
        return 0 < len(event.message_id) <= ID_MAX and len(event.error_code) <= CODE_MAX
    if isinstance(event, CallStatus | KeypadInput):
        digits = event.digits if isinstance(event, KeypadInput) else ""
        return 0 < len(event.call_id) <= ID_MAX and len(digits) <= DIGITS_MAX
    if isinstance(event, MissedCall):
        return 0 < len(event.call_id) <= ID_MAX and len(event.from_phone) <= PHONE_MAX
    return False


def _storable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def parsed_or_refused(parse: Any, value: Any) -> None:
    try:
        result = parse(value)
    except ValueError as exc:
        assert str(exc).partition(":")[0], "the error names its field"
        return
    if isinstance(result, str):  # a call sid
        assert 0 < len(result) <= ID_MAX and _storable(result)
        return
    for event in result if isinstance(result, list) else [result]:
        assert fits(event), event


@pytest.mark.parametrize(
    "parse",
    [
        twilio.parse_inbound_message,
        twilio.parse_message_status,
        twilio.parse_call_status,
        twilio.parse_gather,
        twilio.parse_voice,
    ],
)
@FUZZ
@given(params=fields(TWILIO_FIELDS))
def test_twilio_parsers(parse, params):
    parsed_or_refused(parse, params)


@pytest.mark.parametrize(
    "parse", [exotel.parse_passthru, exotel.parse_call_status, exotel.parse_sms_status]
)
@FUZZ
@given(
    params=fields(EXOTEL_FIELDS)
    | st.dictionaries(st.sampled_from(list(EXOTEL_FIELDS)), json_values)
)
def test_exotel_parsers(parse, params):
    parsed_or_refused(parse, params)


def gupshup_bodies() -> st.SearchStrategy[Any]:
    inner = st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "gsId": json_values,
            "type": st.sampled_from(
                [
                    "text",
                    "quick_reply",
                    "button_reply",
                    "list_reply",
                    "image",
                    "failed",
                    "delivered",
                    "sent",
                    "read",
                    "enqueued",
                ]
            )
            | json_values,
            "source": json_values,
            "sender": st.dictionaries(st.just("phone") | text, json_values, max_size=3),
            "payload": st.dictionaries(
                st.sampled_from(["text", "title", "id", "postbackText", "code", "reason"]),
                json_values,
                max_size=5,
            )
            | json_values,
        },
    )
    body = st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "message-event"]) | json_values},
        optional={"payload": inner | json_values, "app": json_values, "phone": json_values},
    )
    return body | json_values


@FUZZ
@given(body=gupshup_bodies())
def test_gupshup_parser(body):
    parsed_or_refused(gupshup.parse_callback, body)


def ringcentral_bodies() -> st.SearchStrategy[Any]:
    message = st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "type": st.just("SMS") | json_values,
            "direction": st.just("Inbound") | json_values,
            "from": st.dictionaries(st.just("phoneNumber") | text, json_values, max_size=2),
            "to": st.lists(
                st.dictionaries(st.just("phoneNumber") | text, json_values, max_size=2),
                max_size=2,
            )
            | json_values,
            "subject": json_values,
        },
    )
    body = st.fixed_dictionaries(
        {"event": st.just("/restapi/v1.0/account/~/extension/~/message-store/instant") | text},
        optional={"body": message | json_values},
    )
    return body | json_values


@FUZZ
@given(body=ringcentral_bodies())
def test_ringcentral_parser(body):
    parsed_or_refused(ringcentral.parse_notification, body)


SHOPIFY_HEADERS = {
    "X-Shopify-Topic": "orders/create",
    "X-Shopify-Shop-Domain": "fuzz.myshopify.com",
    "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
    "X-Shopify-Triggered-At": "2026-01-05T09:00:00Z",
    "X-Shopify-API-Version": "2026-01",
}


@FUZZ
@given(headers=fields(SHOPIFY_HEADERS))
def test_shopify_delivery_parser(headers):
    try:
        delivery = parse_delivery(headers)
    except ValueError:
        return
    assert len(delivery.webhook_id) <= 255 and len(delivery.event_id or "") <= 255
    assert len(delivery.topic) <= 64 and len(delivery.shop_domain) <= 255


# Routes ----------------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/x-www-form-urlencoded; charset=bogus",
    "application/json",
    "application/json; charset=utf-16",
    "multipart/form-data",
    "multipart/form-data; boundary=b",
    "text/plain",
    "",
]
bodies = st.binary(max_size=300) | text.map(lambda t: t.encode("utf-8", "surrogatepass"))


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        database={"url": database_url},
        server={"public_url": PUBLIC_URL},
        security=SECURITY,
        shopify={"api_key": "app-key", "api_secret": SHOPIFY_SECRET},
        providers={"twilio": {"account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN}},
    )


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


async def answered(client, db, method: str, path: str, **options: Any) -> None:
    before = await stored(db)
    response = await client.request(method, path, **options)
    body = await response.read()
    assert response.status < 500, (method, path, options, response.status, body[:300])
    if response.status >= 400:
        assert await stored(db) == before, (path, options)
        # A request line longer than aiohttp's parser takes is refused (400, plain text)
        # before any handler sees it.
        if len(response.request_info.url.raw_path_qs) <= MAX_REQUEST_LINE:
            assert "error" in json.loads(body), body[:300]


def signed_form(path: str, params: dict[str, str]) -> dict[str, Any]:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return {
        "data": urlencode(params).encode(),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    }


def webhook_paths(settings: Settings) -> list[str]:
    secret = settings.secret_key()
    exotel_token = shop_token(secret, 1)
    return [
        *(f"/webhooks/twilio/{r}" for r in ("messages", "status", "voice", "voice/gather")),
        "/webhooks/twilio/voice/status",
        *(f"/webhooks/exotel/{exotel_token}/{k}" for k in ("passthru", "call-status")),
        f"/webhooks/exotel/{exotel_token}/sms-status",
        f"/webhooks/gupshup/{shop_token(secret, PLATFORM)}",
        "/webhooks/ringcentral",
        "/webhooks/shopify",
    ]


@FUZZ
@given(
    data=st.data(),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
)
async def test_every_webhook_route_refuses_random_bytes(
    client, db, settings, data, body, content_type
):
    path = data.draw(st.sampled_from(webhook_paths(settings)))
    headers = {"Content-Type": content_type} if _header_safe(content_type) else {}
    headers["X-Twilio-Signature"] = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_URL + path, {}
    )
    headers["Verification-Token"] = ringcentral_token(settings.secret_key())
    headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(
        hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
    ).decode()
    await answered(client, db, "POST", path, data=body, headers=headers)


@FUZZ
@given(
    route=st.sampled_from(["messages", "status", "voice", "voice/gather", "voice/status"]),
    params=fields(TWILIO_FIELDS),
)
async def test_signed_twilio_requests_with_random_fields(client, db, route, params):
    path = f"/webhooks/twilio/{route}"
    await answered(client, db, "POST", path, **signed_form(path, params))


@FUZZ
@given(
    kind=st.sampled_from(["passthru", "call-status", "sms-status"]),
    params=fields(EXOTEL_FIELDS),
    how=st.sampled_from(["query", "form", "json"]),
)
async def test_exotel_callbacks_with_random_fields(client, db, settings, kind, params, how):
    path = f"/webhooks/exotel/{shop_token(settings.secret_key(), 1)}/{kind}"
    if how == "query":
        await answered(client, db, "GET", path, params=params)
    elif how == "form":
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        await answered(client, db, "POST", path, data=urlencode(params).encode(), headers=form)
    else:
        await answered(client, db, "POST", path, json=params)


@FUZZ
@given(
    token=st.text(min_size=1, max_size=60).filter(lambda t: "/" not in t and t not in (".", ".."))
)
async def test_random_path_tokens_are_404(client, db, token):
    for path in (f"/webhooks/exotel/{token}/passthru", f"/webhooks/gupshup/{token}"):
        await answered(client, db, "POST", path, data=b"x")


@FUZZ
@given(body=gupshup_bodies())
async def test_gupshup_callbacks_with_random_json(client, db, settings, body):
    path = f"/webhooks/gupshup/{shop_token(settings.secret_key(), PLATFORM)}"
    await answered(client, db, "POST", path, json=body)


@FUZZ
@given(body=ringcentral_bodies())
async def test_ringcentral_deliveries_with_random_json(client, db, settings, body):
    headers = {"Verification-Token": ringcentral_token(settings.secret_key())}
    await answered(client, db, "POST", "/webhooks/ringcentral", json=body, headers=headers)


@FUZZ
@given(headers=fields(SHOPIFY_HEADERS), body=bodies)
async def test_signed_shopify_webhooks_with_random_headers(client, db, headers, body):
    headers = {k: v for k, v in headers.items() if _NAME.fullmatch(k) and _header_safe(v)}
    headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(
        hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
    ).decode()
    await answered(client, db, "POST", "/webhooks/shopify", data=body, headers=headers)


_NAME = re.compile(r"[A-Za-z0-9-]+")


def _header_safe(value: str) -> bool:
    return value.isprintable() and value.isascii() and value.strip() == value and value != ""


@FUZZ
@given(
    token=st.text(min_size=1, max_size=80).filter(lambda t: "/" not in t and t not in (".", "..")),
    form=st.dictionaries(st.sampled_from(["action", "code", "resend"]) | text, text, max_size=3),
    content_type=st.sampled_from(CONTENT_TYPES),
)
async def test_the_customer_page_refuses_random_tokens_and_forms(
    client, db, token, form, content_type
):
    """The page answers in HTML: only its status is checked."""
    before = await stored(db)
    response = await client.get(f"/v/{token}")
    assert response.status < 500, (token, response.status)
    headers = {"Content-Type": content_type} if content_type else {}
    body = urlencode(form).encode()
    response = await client.post(f"/v/{token}", data=body, headers=headers)
    assert response.status < 500, (token, form, response.status)
    assert await stored(db) == before
