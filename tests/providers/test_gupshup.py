"""The Gupshup provider against the fake Gupshup over real HTTP on loopback: template and
quick-reply sends, template lookup, error classes, and the callback parser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    OUTSIDE_SESSION_WINDOW,
    TEMPLATE_NOT_APPROVED,
    UNAUTHORIZED,
    AccountCheck,
    Button,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    TemplateInfo,
    WhatsAppButtons,
    WhatsAppTemplate,
)
from providers.events import InboundMessage, MessageStatus
from providers.gupshup import TEMPLATE_NOT_FOUND, GupshupClient, parse_callback
from providers.sandbox.gupshup import FakeGupshup

API_KEY = "test-gupshup-key"
APP = "OrderTalkDemo"
SOURCE = "917834811114"
CUSTOMER = "+919876543210"
TEMPLATE_ID = "c6aecef6-bcb0-4fb1-8100-28c094e3bc6b"
TEMPLATE_TEXT = "Hi {{1}}, please confirm your order {{2}} of {{3}}."
GS_ID = "ee4a68a0-1203-4c85-8dc3-49d0b3226a35"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGupshup]:
    gupshup = FakeGupshup(api_key=API_KEY, app_name=APP, source=SOURCE)
    await gupshup.start()
    yield gupshup
    await gupshup.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_client(
    http: aiohttp.ClientSession, url: str, *, api_key: str = API_KEY, **options: Any
) -> GupshupClient:
    return GupshupClient(
        http, api_key=api_key, app_name=APP, source=f"+{SOURCE}", api_url=url, **options
    )


@pytest.fixture
def client(http: aiohttp.ClientSession, fake: FakeGupshup) -> GupshupClient:
    return make_client(http, fake.base_url)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    """Our callback endpoint on loopback: keeps each JSON body and answers 200."""
    inbox: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        inbox.append(await request.json())
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhooks/gupshup/{token}", handle)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/webhooks/gupshup/shop-secret")), inbox
    await server.close()


async def expect_error(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    return caught.value


def order_template(**changes: Any) -> WhatsAppTemplate:
    fields: dict[str, Any] = {
        "to": CUSTOMER,
        "template_id": TEMPLATE_ID,
        "params": ("Asha", "#1001", "₹499"),
        "postbacks": ("CONFIRM_1001", "CANCEL_1001"),
    }
    return WhatsAppTemplate(**(fields | changes))


def confirm_buttons(**changes: Any) -> WhatsAppButtons:
    fields: dict[str, Any] = {
        "to": CUSTOMER,
        "text": "Confirm your COD order?",
        "header": "Order #1001",
        "buttons": (Button("CONFIRM_1001", "Confirm"), Button("CANCEL_1001", "Cancel")),
        "reference": "qr-order-1001",
    }
    return WhatsAppButtons(**(fields | changes))


# Sends ------------------------------------------------------------------------------------


async def test_template_send_posts_gupshups_form(client, fake):
    receipt = await client.send_template(order_template())
    assert fake.requests == [("POST", "/wa/api/v1/template/msg")]
    assert fake.messages == [
        {
            "channel": "whatsapp",
            "source": SOURCE,
            "destination": "919876543210",
            "src.name": APP,
            "template": {"id": TEMPLATE_ID, "params": ["Asha", "#1001", "₹499"]},
            "postbackTexts": [
                {"index": 0, "text": "CONFIRM_1001"},
                {"index": 1, "text": "CANCEL_1001"},
            ],
        }
    ]
    assert receipt.status == "queued"
    assert fake.accepted[receipt.provider_message_id] == fake.messages[0]


async def test_template_send_without_postbacks_has_no_postback_field(client, fake):
    await client.send_template(order_template(params=(), postbacks=()))
    assert fake.messages[0]["template"] == {"id": TEMPLATE_ID, "params": []}
    assert "postbackTexts" not in fake.messages[0]


async def test_buttons_send_posts_a_quick_reply(client, fake):
    receipt = await client.send_buttons(confirm_buttons())
    assert fake.requests == [("POST", "/wa/api/v1/msg")]
    assert fake.messages == [
        {
            "channel": "whatsapp",
            "source": SOURCE,
            "destination": "919876543210",
            "src.name": APP,
            "message": {
                "type": "quick_reply",
                "msgid": "qr-order-1001",
                "content": {
                    "type": "text",
                    "text": "Confirm your COD order?",
                    "header": "Order #1001",
                },
                "options": [
                    {"type": "text", "title": "Confirm", "postbackText": "CONFIRM_1001"},
                    {"type": "text", "title": "Cancel", "postbackText": "CANCEL_1001"},
                ],
            },
        }
    ]
    assert fake.accepted[receipt.provider_message_id] == fake.messages[0]


async def test_buttons_without_reference_or_header_get_a_generated_msgid(client, fake):
    three = (Button("A", "Re-attempt"), Button("B", "Reschedule"), Button("C", "Cancel order"))
    await client.send_buttons(confirm_buttons(reference="", header="", buttons=three))
    message = fake.messages[0]["message"]
    assert re.fullmatch(r"[0-9a-f]{32}", message["msgid"])
    assert message["content"] == {"type": "text", "text": "Confirm your COD order?"}
    assert [option["postbackText"] for option in message["options"]] == ["A", "B", "C"]


async def test_session_message_without_buttons_is_plain_text(client, fake):
    await client.send_buttons(confirm_buttons(buttons=(), header=""))
    assert fake.messages[0]["message"] == {"type": "text", "text": "Confirm your COD order?"}


@pytest.mark.parametrize(
    "buttons",
    [
        tuple(Button(f"B{i}", f"Option {i}") for i in range(4)),
        (Button("LONG", "x" * 21),),
        (Button("EMPTY", ""),),
    ],
    ids=["four-buttons", "title-over-20", "empty-title"],
)
async def test_buttons_whatsapp_refuses_are_a_caller_error(client, fake, buttons):
    with pytest.raises(ValueError, match="button"):
        await client.send_buttons(confirm_buttons(buttons=buttons))
    assert fake.messages == []


async def test_twenty_character_title_is_allowed(client, fake):
    await client.send_buttons(confirm_buttons(buttons=(Button("OK", "x" * 20),)))
    assert fake.messages[0]["message"]["options"][0]["title"] == "x" * 20


# Template lookup ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["APPROVED", "PENDING", "REJECTED", "approved"])
async def test_template_lookup_gives_status_and_text(client, fake, status):
    fake.add_template("00b2-other", "order_shipped", "APPROVED", "Shipped {{1}}")
    fake.add_template(TEMPLATE_ID, "order_confirm", status, TEMPLATE_TEXT, language="en_US")
    info = await client.template(TEMPLATE_ID)
    assert info == TemplateInfo(
        template_id=TEMPLATE_ID,
        name="order_confirm",
        status=status.upper(),
        text=TEMPLATE_TEXT,
        language="en_US",
    )
    assert fake.requests == [("GET", f"/sm/api/v1/template/list/{APP}")]


async def test_template_lookup_by_element_name(client, fake):
    fake.add_template(TEMPLATE_ID, "order_confirm", "APPROVED", TEMPLATE_TEXT)
    info = await client.template("order_confirm")
    assert (info.template_id, info.status) == (TEMPLATE_ID, "APPROVED")


async def test_missing_template_is_not_found(client, fake):
    fake.add_template(TEMPLATE_ID, "order_confirm", "APPROVED", TEMPLATE_TEXT)
    error = await expect_error(client.template("no-such-template"))
    assert (error.retryable, error.code) == (False, TEMPLATE_NOT_FOUND)


# Errors -----------------------------------------------------------------------------------


async def test_server_error_is_retryable_and_the_retry_succeeds(client, fake):
    fake.fail_next(1, status=503)
    error = await expect_error(client.send_template(order_template()))
    assert (error.retryable, error.code, error.retry_after) == (True, "HTTP_503", None)
    receipt = await client.send_template(order_template())
    assert receipt.provider_message_id in fake.accepted


async def test_template_lookup_server_error_is_retryable(client, fake):
    fake.fail_next(1, status=502)
    error = await expect_error(client.template(TEMPLATE_ID))
    assert (error.retryable, error.code) == (True, "HTTP_502")


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 7.0), (None, None)])
async def test_throttled_is_retryable_after_retry_after(client, fake, retry_after, expected):
    fake.fail_next(1, status=429, retry_after=retry_after)
    error = await expect_error(client.send_buttons(confirm_buttons()))
    assert (error.retryable, error.code, error.retry_after) == (True, "THROTTLED", expected)


async def test_gupshup_rate_limit_code_is_retryable(client, fake):
    fake.fail_next(
        1, status=400, body={"status": "error", "message": "API Rate Limited", "code": 4001}
    )
    error = await expect_error(client.send_template(order_template()))
    assert (error.retryable, error.code) == (True, "THROTTLED")


@pytest.mark.parametrize("operation", ["template", "buttons", "lookup"])
async def test_refused_api_key_is_unauthorized(http, fake, operation):
    client = make_client(http, fake.base_url, api_key="wrong-key")
    calls = {
        "template": lambda: client.send_template(order_template()),
        "buttons": lambda: client.send_buttons(confirm_buttons()),
        "lookup": lambda: client.template(TEMPLATE_ID),
    }
    error = await expect_error(calls[operation]())
    assert (error.retryable, error.code) == (False, UNAUTHORIZED)
    assert "Authentication Failed" in str(error)


async def test_invalid_destination_is_an_invalid_number(client, fake):
    fake.invalid(CUSTOMER)
    error = await expect_error(client.send_template(order_template()))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)
    assert "Invalid Destination" in str(error)


async def test_non_e164_recipient_is_refused_before_any_request(client, fake):
    error = await expect_error(client.send_buttons(confirm_buttons(to="09876543210")))
    assert (error.retryable, error.code) == (False, INVALID_NUMBER)
    assert fake.requests == []


async def test_other_gupshup_errors_are_permanent_with_the_message(http, fake):
    client = GupshupClient(
        http, api_key=API_KEY, app_name="OtherApp", source=SOURCE, api_url=fake.base_url
    )
    error = await expect_error(client.send_template(order_template()))
    assert (error.retryable, error.code) == (False, "REJECTED")
    assert "Invalid App Details" in str(error)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_gupshup_is_retryable(http):
    client = make_client(http, f"http://127.0.0.1:{free_port()}")
    error = await expect_error(client.send_template(order_template()))
    assert (error.retryable, error.code) == (True, "CONNECTION")


async def test_timeout_is_retryable(http):
    release, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = make_client(http, f"http://127.0.0.1:{port}", timeout_seconds=0.2)
        error = await expect_error(client.template(TEMPLATE_ID))
    finally:
        release.set()
        await closed.wait()
        server.close()
        await server.wait_closed()
    assert (error.retryable, error.code) == (True, "TIMEOUT")


def test_source_must_be_a_number(http):
    with pytest.raises(ValueError, match="source"):
        GupshupClient(http, api_key=API_KEY, app_name=APP, source="OrderTalk")


# Account check ------------------------------------------------------------------------------


async def expect_refusal(client: GupshupClient) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        await client.check_account([f"+{SOURCE}"])
    return caught.value


async def test_check_account_takes_the_key_and_app_but_cannot_confirm_the_number(client, fake):
    check = await client.check_account([f"+{SOURCE}"])
    assert check == AccountCheck(
        name="", numbers=(NumberCapabilities(f"+{SOURCE}", sms=False, voice=False),)
    )
    assert fake.requests == [("GET", f"/sm/api/v1/template/list/{APP}")]


async def test_check_account_refuses_a_wrong_api_key(http, fake):
    refused = await expect_refusal(make_client(http, fake.base_url, api_key="wrong"))
    assert (refused.field, refused.reason) == ("api_key", "Authentication Failed")


async def test_check_account_refuses_an_app_that_is_not_the_keys(http, fake):
    other = GupshupClient(
        http, api_key=API_KEY, app_name="SomeoneElsesApp", source=SOURCE, api_url=fake.base_url
    )
    refused = await expect_refusal(other)
    assert (refused.field, refused.reason) == ("app_name", "Invalid App Details")


@pytest.mark.parametrize("status", [502, 429])
async def test_check_account_transient_failure_is_retryable(client, fake, status):
    fake.fail_next(1, status=status)
    error = await expect_error(client.check_account([f"+{SOURCE}"]))
    assert error.retryable


# Callback parsing (bodies shaped as in wire-formats.md sections 4.3 and 4.4) ----------------


def message(kind: str, content: Any, *, sender: bool = True) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "ABEGkYaYVSEEAhAL3SLAWwHKeKrt6s3FKB0c",
        "source": "919876543210",
        "type": kind,
        "payload": content,
    }
    if sender:
        payload["sender"] = {
            "phone": "919876543210",
            "name": "Asha",
            "country_code": "91",
            "dial_code": "9876543210",
        }
    payload["context"] = {"id": "gBEGkYaYVSEEAgnPFrOLcjkFjL8", "gsId": GS_ID}
    return {
        "app": APP,
        "timestamp": 1580227766370,
        "version": 2,
        "type": "message",
        "payload": payload,
    }


def event(kind: str, *, gs_id: str | None = GS_ID, inner: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "gBEGkYaYVSEEAgnZxQ3JmKK6Wvg",
        "type": kind,
        "destination": "919876543210",
    }
    if gs_id is not None:
        payload["gsId"] = gs_id
    if inner is not None:
        payload["payload"] = inner
    return {
        "app": APP,
        "timestamp": 1580546677791,
        "version": 2,
        "type": "message-event",
        "payload": payload,
    }


def inbound(text: str, button: str = "") -> InboundMessage:
    return InboundMessage(
        provider="gupshup",
        message_id="ABEGkYaYVSEEAhAL3SLAWwHKeKrt6s3FKB0c",
        channel="whatsapp",
        from_phone=CUSTOMER,
        to=APP,
        text=text,
        button=button,
    )


def status(message_id: str, state: str, code: str = "", error: str = "") -> MessageStatus:
    return MessageStatus(
        provider="gupshup", message_id=message_id, status=state, error_code=code, error=error
    )


def changed(body: dict[str, Any], **payload_changes: Any) -> dict[str, Any]:
    """`body` with its payload's fields changed; a None value removes the field."""
    payload = {**body["payload"], **payload_changes}
    return {**body, "payload": {key: val for key, val in payload.items() if val is not None}}


SYNC_FAILED_ID = "59f8db90-c37e-4408-90ab-cc54ef8246ad"
NOT_ON_WHATSAPP = "Number Does Not Exists On WhatsApp"


@pytest.mark.parametrize(
    ("body", "events"),
    [
        (message("text", {"text": "Hi"}), [inbound("Hi")]),
        (
            message("text", {"text": "where is my order"}, sender=False),
            [inbound("where is my order")],
        ),
        (
            message(
                "quick_reply", {"title": "Confirm", "id": "qr-order-1001", "reply": "Confirm 1"}
            ),
            [inbound("Confirm", button="Confirm")],
        ),
        (
            message(
                "button_reply",
                {
                    "title": "Cancel",
                    "id": "qr1",
                    "reply": "Cancel 2",
                    "postbackText": "CANCEL_1001",
                },
            ),
            [inbound("Cancel", button="CANCEL_1001")],
        ),
        (
            message(
                "quick_reply",
                {"text": "Confirm order", "type": "button", "postbackText": "CONFIRM_1001"},
            ),
            [inbound("Confirm order", button="CONFIRM_1001")],
        ),
        (
            message("quick_reply", {"text": "View Account Balance", "type": "button"}),
            [inbound("View Account Balance", button="View Account Balance")],
        ),
        (
            message(
                "list_reply",
                {
                    "title": "Tomorrow",
                    "id": "list1",
                    "reply": "Tomorrow 1",
                    "postbackText": "DAY_1",
                },
            ),
            [inbound("Tomorrow", button="DAY_1")],
        ),
        (
            message("image", {"url": "https://filemanager.gupshup.io/x", "caption": "parcel"}),
            [inbound("parcel")],
        ),
        (message("location", {"longitude": 77.59, "latitude": 12.97}), [inbound("[location]")]),
        (event("delivered", inner={"ts": 1585344475}), [status(GS_ID, "delivered")]),
        (event("read"), [status(GS_ID, "read")]),
        (event("sent", inner={"ts": 1585344475}), [status(GS_ID, "sent")]),
        (
            changed(
                event(
                    "enqueued", gs_id=None, inner={"whatsappMessageId": "gBEG1", "type": "session"}
                ),
                id=SYNC_FAILED_ID,
            ),
            [status(SYNC_FAILED_ID, "queued")],
        ),
        (
            event("failed", inner={"code": 1012, "reason": "Number Opted Out"}),
            [status(GS_ID, "failed", OPTED_OUT, "Number Opted Out")],
        ),
        (
            changed(
                event("failed", gs_id=None, inner={"code": "1002", "reason": NOT_ON_WHATSAPP}),
                id=SYNC_FAILED_ID,
            ),
            [status(SYNC_FAILED_ID, "failed", INVALID_NUMBER, NOT_ON_WHATSAPP)],
        ),
        (
            event("failed", inner={"code": 4005, "reason": "Paused Template"}),
            [status(GS_ID, "failed", TEMPLATE_NOT_APPROVED, "Paused Template")],
        ),
        (
            event("failed", inner={"code": 131047, "reason": "Re-engagement message"}),
            [status(GS_ID, "failed", OUTSIDE_SESSION_WINDOW, "Re-engagement message")],
        ),
        (
            event("failed", inner={"code": 131026, "reason": "Message undeliverable"}),
            [status(GS_ID, "failed", "131026", "Message undeliverable")],
        ),
        (event("deleted"), []),
        (
            {
                "app": APP,
                "timestamp": 1580142086287,
                "version": 2,
                "type": "user-event",
                "payload": {"phone": "919876543210", "type": "opted-in"},
            },
            [],
        ),
        (
            {
                "app": APP,
                "timestamp": 1636986446609,
                "version": 2,
                "type": "template-event",
                "payload": {"id": TEMPLATE_ID, "status": "approved", "elementName": "x"},
            },
            [],
        ),
        ({"app": APP, "version": 2, "type": "billing-event", "payload": {}}, []),
    ],
    ids=[
        "text",
        "text-source-only",
        "session-quick-reply",
        "session-button-reply-postback",
        "template-button-postback",
        "template-button-no-postback",
        "list-reply",
        "image-caption",
        "location",
        "delivered-gsid",
        "read-gsid",
        "sent-gsid",
        "enqueued-without-gsid",
        "failed-opted-out",
        "failed-sync-invalid-number",
        "failed-paused-template",
        "failed-outside-24-hour-window",
        "failed-meta-code",
        "deleted-ignored",
        "user-event-ignored",
        "template-event-ignored",
        "billing-event-ignored",
    ],
)
def test_parse_callback(body, events):
    assert parse_callback(body) == events


def test_event_statuses_dedup_per_message_and_status():
    delivered = parse_callback(event("delivered"))[0]
    read = parse_callback(event("read"))[0]
    assert delivered.dedup_key == f"status:{GS_ID}:delivered"
    assert delivered.dedup_key != read.dedup_key


TEXT = message("text", {"text": "Hi"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([TEXT], "body"),
        ({"payload": {}}, "type"),
        ({"type": "message", "payload": "hi"}, "payload"),
        (changed(TEXT, id=None), "payload.id"),
        (changed(TEXT, type=None), "payload.type"),
        (changed(TEXT, sender={"phone": None}), "payload.sender.phone"),
        (changed(TEXT, sender={"phone": "91-98765"}), "payload.sender.phone"),
        (changed(TEXT, sender={"phone": "12"}), "payload.sender.phone"),
        (changed(TEXT, sender=None, source=None), "payload.source"),
        (changed(TEXT, payload=None), "payload.payload"),
        (changed(TEXT, payload={"text": 5}), "payload.payload.text"),
        (changed(message("quick_reply", {"type": "button"})), "payload.payload.text"),
        (changed(message("quick_reply", {"title": None, "id": "qr1"})), "payload.payload.title"),
        (changed(event("delivered"), gsId=None, id=None), "payload.id"),
        (changed(event("delivered"), type=None), "payload.type"),
    ],
)
def test_malformed_callback_names_the_field(body, field):
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
        parse_callback(body)


# Callbacks sent by the fake ---------------------------------------------------------------


async def test_fake_sends_an_inbound_text(fake, receiver):
    url, inbox = receiver
    assert (await fake.send_text(url, from_phone=CUSTOMER, text="1"))[0] == 200
    body = inbox[0]
    assert (body["type"], body["app"], body["version"]) == ("message", APP, 2)
    assert body["payload"]["sender"] == {
        "phone": "919876543210",
        "name": "Asha",
        "country_code": "91",
        "dial_code": "9876543210",
    }
    assert body["payload"]["payload"] == {"text": "1"}
    [message] = parse_callback(body)
    assert (message.from_phone, message.text, message.button) == (CUSTOMER, "1", "")


async def test_fake_sends_both_quick_reply_shapes(fake, client, receiver):
    url, inbox = receiver
    receipt = await client.send_buttons(confirm_buttons())
    await fake.send_button_reply(
        url,
        from_phone=CUSTOMER,
        title="Cancel",
        postback="CANCEL_1001",
        reply_id="qr-order-1001",
        context_gs_id=receipt.provider_message_id,
    )
    await fake.send_button_reply(url, from_phone=CUSTOMER, title="Confirm", postback="CONFIRM_1")
    session, template = inbox
    assert session["payload"]["type"] == "quick_reply"
    assert session["payload"]["payload"] == {
        "title": "Cancel",
        "id": "qr-order-1001",
        "reply": "Cancel 2",
        "postbackText": "CANCEL_1001",
    }
    assert session["payload"]["context"]["gsId"] == receipt.provider_message_id
    assert template["payload"]["payload"] == {
        "text": "Confirm",
        "type": "button",
        "postbackText": "CONFIRM_1",
    }
    assert "context" not in template["payload"]
    assert [(m.text, m.button) for body in inbox for m in parse_callback(body)] == [
        ("Cancel", "CANCEL_1001"),
        ("Confirm", "CONFIRM_1"),
    ]


async def test_fake_sends_message_events(fake, client, receiver):
    url, inbox = receiver
    gs_id = (await client.send_template(order_template())).provider_message_id
    for state in ("enqueued", "sent", "delivered", "read"):
        await fake.send_event(url, gs_id=gs_id, status=state, destination=CUSTOMER)
    await fake.send_event(
        url,
        gs_id=gs_id,
        status="failed",
        destination=CUSTOMER,
        code=1012,
        reason="Number Opted Out",
    )
    assert inbox[0]["payload"]["id"] == gs_id
    assert inbox[0]["payload"]["payload"]["type"] == "session"
    assert inbox[2]["payload"]["gsId"] == gs_id
    assert inbox[2]["payload"]["id"] != gs_id
    assert inbox[2]["payload"]["destination"] == "919876543210"
    assert inbox[4]["payload"]["payload"] == {"code": 1012, "reason": "Number Opted Out"}
    assert [event for body in inbox for event in parse_callback(body)] == [
        status(gs_id, "queued"),
        status(gs_id, "sent"),
        status(gs_id, "delivered"),
        status(gs_id, "read"),
        status(gs_id, "failed", OPTED_OUT, "Number Opted Out"),
    ]
