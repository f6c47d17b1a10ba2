"""The RingCentral provider against the fake RingCentral over real HTTP on loopback: JWT auth and
token refresh, SMS send and its error classes, WebHook subscriptions with the handshake, and the
webhook helpers."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from clock import ManualClock
from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    UNAUTHORIZED,
    AccountCheck,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SendReceipt,
    SmsRequest,
)
from providers.events import InboundMessage
from providers.ringcentral import (
    JWT_GRANT,
    SMS_EVENT_FILTER,
    RingCentralClient,
    Subscription,
    needs_renewal,
    parse_notification,
    validation_token,
    verify_delivery,
)
from tests.fakes.ringcentral import FakeRingCentral

CLIENT_ID = "rc-client-id"
CLIENT_SECRET = "rc-client-secret"
JWT = "eyJhbGciOiJSUzI1NiJ9.rc-jwt-credential.signature"
SENDER = "+16505550100"
CUSTOMER = "+14155550123"
VERIFICATION_TOKEN = "d1b6c2f0a9e84c3b8f7e6d5c4b3a2f10"
SMS_PATH = "/restapi/v1.0/account/~/extension/~/sms"
WEEK = timedelta(days=7)

# The instant SMS notification of wire-formats.md section 5.4.
SAMPLE_NOTIFICATION: dict[str, Any] = {
    "uuid": "5a3f2c1e-7b9d-4e6f-8a1b-2c3d4e5f6a7b",
    "event": "/restapi/v1.0/account/37439510/extension/946159004/message-store/instant?type=SMS",
    "timestamp": "2026-03-10T18:07:52.534Z",
    "subscriptionId": "b2f3a4c5-d6e7-4f80-9a1b-c2d3e4f5a6b7",
    "ownerId": "946159004",
    "body": {
        "id": "1234567890",
        "to": [{"phoneNumber": "+16505550100", "name": "Store", "location": "San Mateo, CA"}],
        "from": {"phoneNumber": "+14155550123", "name": "Asha Rao"},
        "type": "SMS",
        "creationTime": "2026-03-10T18:07:52.534Z",
        "lastModifiedTime": "2026-03-10T18:07:52.534Z",
        "readStatus": "Unread",
        "priority": "Normal",
        "attachments": [{"id": "1234567890", "type": "Text", "contentType": "text/plain"}],
        "direction": "Inbound",
        "availability": "Alive",
        "subject": "STOP",
        "messageStatus": "Received",
        "conversationId": "7392000000000000001",
        "conversation": {"id": "7392000000000000001"},
    },
}


@dataclass
class Receiver:
    """Our webhook route in miniature: answers the handshake and keeps each delivery."""

    url: str = ""
    echo: bool = True
    status: int = 200
    handshakes: list[str] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeRingCentral]:
    ringcentral = FakeRingCentral(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, jwt=JWT, clock=clock
    )
    await ringcentral.start()
    yield ringcentral
    await ringcentral.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(
    http: aiohttp.ClientSession, clock: ManualClock, fake: FakeRingCentral
) -> RingCentralClient:
    return RingCentralClient(
        http,
        clock,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        jwt=JWT,
        api_url=fake.base_url,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        token = validation_token(request.headers)
        if token is not None and not body:
            state.handshakes.append(token)
            headers = {"Validation-Token": token} if state.echo else {}
            return web.Response(status=state.status, headers=headers)
        state.deliveries.append((dict(request.headers), body))
        return web.Response()

    app = web.Application()
    app.router.add_post("/webhooks/ringcentral", handle)
    server = TestServer(app)
    await server.start_server()
    state.url = str(server.make_url("/webhooks/ringcentral"))
    yield state
    await server.close()


def sms(to: str = CUSTOMER, text: str = "Your order #1001 has shipped") -> SmsRequest:
    return SmsRequest(to=to, body=text, sender=SENDER)


def bearers(fake: FakeRingCentral) -> list[str]:
    return [headers["Authorization"] for _, _, _, headers in fake.requests]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def expect_error(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    return caught.value


# Auth and SMS send ---------------------------------------------------------------------------


async def test_jwt_grant_then_send(client, fake):
    receipt = await client.send_sms(sms())
    assert receipt == SendReceipt(fake.messages[0]["id"], "queued")
    assert fake.grants == [JWT_GRANT]
    [(method, path, body, headers)] = fake.requests
    assert (method, path) == ("POST", SMS_PATH)
    assert body == {
        "from": {"phoneNumber": SENDER},
        "to": [{"phoneNumber": CUSTOMER}],
        "text": "Your order #1001 has shipped",
    }
    assert headers["Authorization"] == f"Bearer {fake.issued[0]}"


async def test_token_is_reused_while_valid(client, fake, clock):
    await client.send_sms(sms())
    clock.advance(timedelta(seconds=3600 - 61))
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT]
    assert bearers(fake) == [f"Bearer {fake.issued[0]}"] * 2


async def test_token_is_refreshed_before_it_expires(client, fake, clock):
    await client.send_sms(sms())
    clock.advance(timedelta(seconds=3600 - 60))
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT, "refresh_token"]
    assert bearers(fake) == [f"Bearer {token}" for token in fake.issued]


async def test_refused_refresh_falls_back_to_the_jwt(client, fake, clock):
    await client.send_sms(sms())
    fake.revoke_refresh_tokens()
    clock.advance(timedelta(hours=1))
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT, "refresh_token", JWT_GRANT]
    assert len(fake.messages) == 2


async def test_expired_refresh_token_is_not_tried(client, fake, clock):
    fake.refresh_token_expires_in = 7200
    await client.send_sms(sms())
    clock.advance(timedelta(hours=2))
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT, JWT_GRANT]


async def test_concurrent_sends_share_one_token_request(client, fake):
    await asyncio.gather(*(client.send_sms(sms()) for _ in range(5)))
    assert fake.grants == [JWT_GRANT]
    assert len(fake.messages) == 5


async def test_401_reauthenticates_and_retries_once(client, fake):
    await client.send_sms(sms())
    fake.expire_access_tokens()
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT, "refresh_token"]
    assert bearers(fake) == [f"Bearer {fake.issued[0]}"] * 2 + [f"Bearer {fake.issued[1]}"]
    assert len(fake.messages) == 2


async def test_401_after_reauthentication_is_unauthorized(client, fake):
    await client.send_sms(sms())
    fake.fail_next(2, status=401)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert "OAU-213" in str(error)
    assert len(fake.requests) == 3


async def test_revoked_credentials_are_unauthorized(client, fake):
    await client.send_sms(sms())
    fake.expire_access_tokens()
    fake.revoke_refresh_tokens()
    fake.jwt = "a-revoked-jwt"
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert fake.grants == [JWT_GRANT, "refresh_token", JWT_GRANT]


async def test_wrong_client_secret_never_reaches_the_api(http, clock, fake):
    client = RingCentralClient(
        http, clock, client_id=CLIENT_ID, client_secret="wrong", jwt=JWT, api_url=fake.base_url
    )
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert "OAU-146" in str(error)
    assert fake.requests == []


async def test_server_error_is_retryable(client, fake):
    fake.fail_next(1, status=503)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, "HTTP_503", None)
    assert (await client.send_sms(sms())).status == "queued"


@pytest.mark.parametrize(
    ("status", "retry_after", "code", "wait"),
    [
        (429, "30", "THROTTLED", 30.0),
        (429, "soon", "THROTTLED", None),
        (503, "7", "HTTP_503", 7.0),
    ],
)
async def test_retry_after_is_honoured(client, fake, status, retry_after, code, wait):
    fake.fail_next(1, status=status, retry_after=retry_after)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, code, wait)


async def test_retry_after_as_an_http_date(client, fake, clock):
    fake.fail_next(
        1, status=429, retry_after=format_datetime(clock.now() + timedelta(minutes=2), usegmt=True)
    )
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code, error.retry_after) == (True, "THROTTLED", 120.0)


async def test_invalid_number(client, fake):
    fake.invalid("+15005550001")
    error = await expect_error(client.send_sms(sms(to="+15005550001")))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)
    assert "CMN-101" in str(error)


async def test_opted_out_recipient(client, fake):
    fake.opt_out(CUSTOMER)
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (False, OPTED_OUT)
    assert "SMS-RC-413" in str(error)


async def test_other_refusal_is_permanent_with_ringcentrals_code(client, fake):
    error = await expect_error(client.send_sms(sms(text="")))
    assert (error.retryable, error.code) == (False, "CMN-101")
    assert "Parameter [text] value is invalid" in str(error)


async def test_unreachable_ringcentral_is_retryable(http, clock):
    client = RingCentralClient(
        http,
        clock,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        jwt=JWT,
        api_url=f"http://127.0.0.1:{free_port()}",
    )
    error = await expect_error(client.send_sms(sms()))
    assert (error.retryable, error.code) == (True, "CONNECTION")


# Account check ------------------------------------------------------------------------------


def account(
    http: aiohttp.ClientSession, clock: ManualClock, fake: FakeRingCentral, **credentials: str
) -> RingCentralClient:
    values = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "jwt": JWT} | credentials
    return RingCentralClient(http, clock, api_url=fake.base_url, **values)


async def expect_refusal(client: RingCentralClient, numbers: list[str]) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        await client.check_account(numbers)
    return caught.value


async def test_check_account_reports_the_numbers_features(client, fake):
    fake.add_number(SENDER)
    fake.add_number("+16505550101", features=("SmsSender",))
    fake.add_number("+16505550102", features=("CallerId",), usage_type="MainCompanyNumber")

    check = await client.check_account(["+16505550101", SENDER])

    assert check == AccountCheck(
        name="Store Manager",
        numbers=(
            NumberCapabilities("+16505550101", sms=True, voice=False),
            NumberCapabilities(SENDER, sms=True, voice=True),
        ),
    )
    assert fake.grants == [JWT_GRANT]


async def test_check_account_reads_every_page_of_numbers(client, fake):
    owned = [f"+1650555{n:04d}" for n in range(150)]
    for number in owned:
        fake.add_number(number)
    check = await client.check_account([owned[-1]])
    assert check.numbers == (NumberCapabilities(owned[-1], sms=True, voice=True),)
    pages = [path for _, path, _, _ in fake.requests if path.endswith("/phone-number")]
    assert len(pages) == 2


async def test_check_account_grants_afresh_and_the_token_serves_sends(client, fake):
    fake.add_number(SENDER)
    await client.send_sms(sms())
    await client.check_account([SENDER])
    await client.send_sms(sms())
    assert fake.grants == [JWT_GRANT, JWT_GRANT]


async def test_check_account_refuses_a_wrong_client_secret(http, clock, fake):
    refused = await expect_refusal(account(http, clock, fake, client_secret="wrong"), [SENDER])
    assert (refused.field, refused.reason) == (
        "client_secret",
        "OAU-146 Invalid client credentials",
    )
    assert fake.requests == []


async def test_check_account_refuses_a_wrong_jwt(http, clock, fake):
    refused = await expect_refusal(account(http, clock, fake, jwt="not-the-jwt"), [SENDER])
    assert (refused.field, refused.reason) == ("jwt", "OAU-213 Token not found")


async def test_check_account_refuses_an_app_without_read_accounts(client, fake):
    fake.fail_next(1, status=403)
    refused = await expect_refusal(client, [SENDER])
    assert refused.field == "client_id"
    assert "[ReadAccounts] permission" in refused.reason


async def test_check_account_refuses_a_number_of_another_extension(client, fake):
    fake.add_number(SENDER)
    refused = await expect_refusal(client, [SENDER, "+16505550199"])
    assert (refused.field, refused.reason) == (
        "numbers.1",
        "+16505550199 is not a number of this RingCentral extension",
    )


async def test_check_account_refuses_a_number_without_sms_sender(client, fake):
    fake.add_number(SENDER, features=("CallerId", "MmsSender"))
    refused = await expect_refusal(client, [SENDER])
    assert (refused.field, refused.reason) == (
        "numbers.0",
        f"{SENDER} cannot send SMS (no SmsSender feature)",
    )


async def test_check_account_refuses_what_is_not_a_phone_number(client):
    refused = await expect_refusal(client, ["sms line"])
    assert (refused.field, refused.reason) == (
        "numbers.0",
        "sms line is not an E.164 phone number",
    )


@pytest.mark.parametrize("status", [503, 429])
async def test_check_account_transient_failure_is_retryable(client, fake, status):
    fake.fail_next(1, status=status)
    error = await expect_error(client.check_account([SENDER]))
    assert error.retryable


# Subscriptions ------------------------------------------------------------------------------


async def test_create_subscription_runs_the_handshake(client, fake, receiver, clock):
    subscription = await client.create_subscription(receiver.url, VERIFICATION_TOKEN)
    assert len(receiver.handshakes) == 1
    assert subscription == Subscription(
        id=subscription.id, expires_at=clock.now() + WEEK, address=receiver.url
    )
    assert fake.requests[-1][:3] == (
        "POST",
        "/restapi/v1.0/subscription",
        {
            "eventFilters": [SMS_EVENT_FILTER],
            "deliveryMode": {
                "transportType": "WebHook",
                "address": receiver.url,
                "verificationToken": VERIFICATION_TOKEN,
            },
            "expiresIn": 604800,
        },
    )
    assert fake.subscriptions[subscription.id].verification_token == VERIFICATION_TOKEN


@pytest.mark.parametrize(
    ("echo", "status", "code"), [(False, 200, "SUB-525"), (True, 500, "SUB-522")]
)
async def test_create_subscription_fails_the_handshake(client, fake, receiver, echo, status, code):
    receiver.echo, receiver.status = echo, status
    error = await expect_error(client.create_subscription(receiver.url, VERIFICATION_TOKEN))
    assert (error.retryable, error.code) == (False, code)
    assert len(receiver.handshakes) == 1
    assert fake.subscriptions == {}


async def test_renew_subscription(client, fake, receiver, clock):
    created = await client.create_subscription(receiver.url, VERIFICATION_TOKEN, expires_in=3600)
    clock.advance(timedelta(minutes=50))
    renewed = await client.renew_subscription(created.id)
    assert renewed == Subscription(
        id=created.id, expires_at=clock.now() + timedelta(hours=1), address=receiver.url
    )
    assert fake.requests[-1][:3] == (
        "POST",
        f"/restapi/v1.0/subscription/{created.id}/renew",
        None,
    )


async def test_renew_unknown_subscription_is_permanent(client):
    error = await expect_error(client.renew_subscription("no-such-subscription"))
    assert (error.retryable, error.code) == (False, "CMN-102")


@pytest.mark.parametrize(
    ("left", "due"),
    [
        (timedelta(days=2), False),
        (timedelta(hours=24, seconds=1), False),
        (timedelta(hours=24), True),
        (timedelta(hours=1), True),
        (-timedelta(hours=1), True),
    ],
)
def test_needs_renewal(left, due):
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    subscription = Subscription(id="s", expires_at=now + left, address="https://x.example/rc")
    assert needs_renewal(subscription, now) is due


def test_needs_renewal_with_a_margin():
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    subscription = Subscription(id="s", expires_at=now + timedelta(hours=2), address="")
    assert not needs_renewal(subscription, now, margin=timedelta(hours=1))
    assert needs_renewal(subscription, now, margin=timedelta(hours=3))


# Deliveries ---------------------------------------------------------------------------------


async def test_delivery_verifies_and_parses(client, fake, receiver):
    await client.create_subscription(receiver.url, VERIFICATION_TOKEN)
    status, _ = await fake.deliver_sms(
        receiver.url, from_phone=CUSTOMER, to_phone=SENDER, text="STOP", message_id="987654321"
    )
    assert status == 200
    headers, raw = receiver.deliveries[0]
    assert validation_token(headers) is None
    assert verify_delivery(headers, VERIFICATION_TOKEN)
    assert not verify_delivery(headers, "another-token")
    assert not verify_delivery(headers, "")
    assert parse_notification(json.loads(raw)) == [
        InboundMessage(
            provider="ringcentral",
            message_id="987654321",
            channel="sms",
            from_phone=CUSTOMER,
            to=SENDER,
            text="STOP",
        )
    ]


@pytest.mark.parametrize("token", ["forged-token", ""])
async def test_forged_or_unsigned_delivery_is_refused(client, fake, receiver, token):
    await client.create_subscription(receiver.url, VERIFICATION_TOKEN)
    await fake.deliver_sms(
        receiver.url, from_phone=CUSTOMER, to_phone=SENDER, text="1", verification_token=token
    )
    headers, _ = receiver.deliveries[0]
    assert not verify_delivery(headers, VERIFICATION_TOKEN)


@pytest.mark.parametrize(
    "headers",
    [
        {"Verification-Token": VERIFICATION_TOKEN},
        {"verification-token": f" {VERIFICATION_TOKEN} "},
        {"Validation-Token": VERIFICATION_TOKEN},
        {"Verification-Token": "stale", "Validation-Token": VERIFICATION_TOKEN},
        CIMultiDict({"VERIFICATION-TOKEN": VERIFICATION_TOKEN}),
    ],
)
def test_verify_delivery_accepts_either_header(headers):
    assert verify_delivery(headers, VERIFICATION_TOKEN)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, VERIFICATION_TOKEN),
        ({"Verification-Token": ""}, VERIFICATION_TOKEN),
        ({"Verification-Token": VERIFICATION_TOKEN[:-1]}, VERIFICATION_TOKEN),
        ({"Verification-Token": "t\u00e9st"}, "test"),
        ({"Verification-Token": ""}, ""),
        ({}, ""),
    ],
)
def test_verify_delivery_refuses(headers, expected):
    assert not verify_delivery(headers, expected)


def test_validation_token_reads_any_casing():
    assert validation_token({"validation-token": "abc"}) == "abc"
    assert validation_token(CIMultiDict({"Validation-Token": "abc"})) == "abc"
    assert validation_token({"Validation-Token": ""}) is None
    assert validation_token({"Verification-Token": "abc"}) is None


# Notifications ------------------------------------------------------------------------------


def test_parse_real_shaped_notification():
    assert parse_notification(SAMPLE_NOTIFICATION) == [
        InboundMessage(
            provider="ringcentral",
            message_id="1234567890",
            channel="sms",
            from_phone="+14155550123",
            to="+16505550100",
            text="STOP",
        )
    ]


def notification(**changes: Any) -> dict[str, Any]:
    """The sample with body fields changed (a None value removes the field)."""
    payload = copy.deepcopy(SAMPLE_NOTIFICATION)
    for name, value in changes.items():
        if value is None:
            payload["body"].pop(name, None)
        else:
            payload["body"][name] = value
    return payload


def test_numeric_message_id_and_missing_subject():
    [message] = parse_notification(notification(id=1234567890, subject=None))
    assert (message.message_id, message.text) == ("1234567890", "")


@pytest.mark.parametrize(
    "payload",
    [
        notification(direction="Outbound", messageStatus="Sent"),
        notification(type="Pager"),
        {**SAMPLE_NOTIFICATION, "event": "/restapi/v1.0/account/~/extension/~/presence"},
        {
            "event": "/restapi/v1.0/subscription/~?threshold=86400&interval=3600",
            "body": {"id": "b2f3", "expirationTime": "2026-03-17T18:07:52.534Z"},
        },
    ],
    ids=["outbound", "pager", "presence", "renewal-reminder"],
)
def test_other_notifications_are_ignored(payload):
    assert parse_notification(payload) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in SAMPLE_NOTIFICATION.items() if k != "event"}, "event"),
        ({**SAMPLE_NOTIFICATION, "body": None}, "body"),
        ({**SAMPLE_NOTIFICATION, "body": []}, "body"),
        (notification(direction=None), "body.direction"),
        (notification(type=None), "body.type"),
        (notification(id=None), "body.id"),
        (notification(id=True), "body.id"),
        (notification(id=""), "body.id"),
        (notification(**{"from": None}), "body.from"),
        (notification(**{"from": {"name": "x"}}), "body.from.phoneNumber"),
        (notification(**{"from": {"phoneNumber": "4155550123"}}), "body.from.phoneNumber"),
        (notification(**{"from": {"phoneNumber": "+1415"}}), "body.from.phoneNumber"),
        (notification(to=None), "body.to"),
        (notification(to=[]), "body.to"),
        (notification(to=[{"name": "Store"}]), "body.to[0].phoneNumber"),
        (notification(to=["+16505550100"]), "body.to[0].phoneNumber"),
        (notification(subject=5), "body.subject"),
    ],
)
def test_malformed_notification_names_the_field(payload, field):
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
        parse_notification(payload)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(SAMPLE_NOTIFICATION["body"])), JSON, max_size=5),
    st.sampled_from([None, "event", "body"]),
    JSON,
)
def test_parse_notification_raises_only_value_error(changes, envelope_field, envelope_value):
    payload = notification()
    payload["body"].update(changes)
    if envelope_field is not None:
        payload[envelope_field] = envelope_value
    with contextlib.suppress(ValueError):
        parse_notification(payload)
