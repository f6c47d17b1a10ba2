"""Messaging end to end against the providers' fakes over HTTP: sends with retries, permanent
failures and rate limits, signed/forged callbacks with deduplication, and the Twilio IVR."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from flows.channels.callback_urls import PLATFORM, ringcentral_token, shop_token
from flows.channels.messaging import SEND_JOB, MessageSender, Route, queue_message
from flows.channels.ringcentral_subscription import check_now
from main import make_worker, open_resources
from providers.exotel import ExotelClient
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.gupshup import FakeGupshup
from providers.sandbox.twilio import FakeTwilio
from settings import Settings
from storage.jobs import Worker
from storage.models import (
    Activity,
    Call,
    Customer,
    Job,
    Message,
    Order,
    ProviderState,
    Shop,
    WebhookReceipt,
)
from storage.models import MissedCall as MissedCallRow
from tests.conftest import SECURITY
from tests.fakes.ringcentral import FakeRingCentral
from web.app import AppDeps, build_app

CUSTOMER = "+919876543210"
SMS_FROM = "+15005550006"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def fakes(clock):
    started = {
        "twilio": FakeTwilio(),
        "gupshup": FakeGupshup(),
        "ringcentral": FakeRingCentral(clock=clock),
        "exotel": FakeExotel(),
    }
    for fake in started.values():
        await fake.start()
    yield started
    for fake in started.values():
        await fake.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url, fakes, port):
    twilio, gupshup, ringcentral = fakes["twilio"], fakes["gupshup"], fakes["ringcentral"]
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        providers={
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "sms_from": SMS_FROM,
                "messages_per_second": 1,
            },
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "exotel": {"api_url": fakes["exotel"].base_url},
            "ringcentral": {
                "client_id": ringcentral.client_id,
                "client_secret": ringcentral.client_secret,
                "jwt": ringcentral.jwt,
                "api_url": ringcentral.base_url,
                "sms_from": "+16505550100",
            },
        },
    )


@pytest.fixture
async def res(settings, clock, db):
    async with open_resources(settings, clock) as resources:
        yield resources


@pytest.fixture
async def server(aiohttp_server, res, port):
    app = build_app(
        AppDeps(
            res.settings,
            res.clock,
            res.db,
            res.queue,
            res.metrics,
            res.http,
            res.account_desk(),
            res.redis,
        )
    )
    return await aiohttp_server(app, port=port)


@pytest.fixture
def worker(res):
    return make_worker(res)


@pytest.fixture
async def order(res, clock):
    now = clock.now()
    async with res.db.transaction() as session:
        shop = Shop(domain="demo.myshopify.com", name="Demo", created_at=now, updated_at=now)
        session.add(shop)
        await session.flush()
        customer = Customer(shop_id=shop.id, phone=CUSTOMER, name="Asha", created_at=now)
        session.add(customer)
        await session.flush()
        row = Order(
            shop_id=shop.id,
            customer_id=customer.id,
            shopify_order_id="1",
            name="#1001",
            number=1001,
            phone=CUSTOMER,
            total_amount="1499.00",
            currency="INR",
            payment_method="cod",
            placed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    desk = res.account_desk()
    for provider in ("twilio", "gupshup", "ringcentral"):  # SMS by Twilio, WhatsApp by Gupshup
        await desk.connect(row.shop_id, {"provider": provider, "platform": True})
    return row


async def send(
    res, order, *, channel="sms", body="Your order #1001 is on its way", key="k1", details=None
) -> int:
    async with res.db.transaction() as session:
        message = await queue_message(
            session,
            res.queue,
            res.clock.now(),
            shop_id=order.shop_id,
            channel=channel,
            to=CUSTOMER,
            idempotency_key=key,
            body=body,
            order_id=order.id,
            details=details,
        )
    return message.id


async def wrote_from(res, order, provider: str, sender: str, channel: str = "sms") -> None:
    """The shop's message to the customer, sent from the platform's `provider` account and
    number `sender`: a reply to that number is then the shop's (issue 15)."""
    now = res.clock.now()
    async with res.db.transaction() as session:
        session.add(
            Message(
                shop_id=order.shop_id,
                order_id=order.id,
                channel=channel,
                direction="out",
                provider=provider,
                account="platform",
                to_phone=CUSTOMER,
                from_phone=sender,
                body="Your order #1001 is confirmed",
                provider_message_id=f"{provider}-{channel}-sent",
                status="sent",
                created_at=now,
                updated_at=now,
            )
        )


async def message(res, message_id: int) -> Message:
    async with res.db.sessions() as session:
        return await session.get(Message, message_id)


async def count(res, model, *where) -> int:
    async with res.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_sms_goes_out_through_twilio_and_delivery_is_recorded_once(
    res, server, worker, fakes, order
):
    twilio = fakes["twilio"]
    message_id = await send(res, order)
    await worker.run_until_idle()
    [sent] = twilio.messages
    assert sent["To"] == CUSTOMER and sent["From"] == SMS_FROM
    assert sent["Body"] == "Your order #1001 is on its way"
    assert sent["StatusCallback"] == f"{res.settings.server.public_url}/webhooks/twilio/status"
    row = await message(res, message_id)
    assert (row.status, row.provider, row.account) == ("sent", "twilio", "platform")
    assert (row.encoding, row.segments) == ("GSM-7", 1)

    url = str(server.make_url("/webhooks/twilio/status"))
    for _ in range(2):
        status, _ = await twilio.send_status(url, row.provider_message_id, "delivered")
        assert status == 204
    late, _ = await twilio.send_status(url, row.provider_message_id, "sent")
    assert late == 204
    await worker.run_until_idle()
    assert (await message(res, message_id)).status == "delivered"
    assert await count(res, WebhookReceipt, WebhookReceipt.provider == "twilio") == 2


async def test_transient_failure_is_retried_then_succeeds(res, worker, fakes, order, clock):
    fakes["twilio"].fail_next(1, status=503)
    message_id = await send(res, order)
    await worker.run_until_idle()
    assert (await message(res, message_id)).status == "queued"
    async with res.db.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "message.send"))
    assert job.status == "queued" and job.attempts == 1
    clock.set(job.due_at)
    await worker.run_until_idle()
    assert (await message(res, message_id)).status == "sent"
    assert len(fakes["twilio"].messages) == 2


async def test_permanent_failure_is_recorded_and_not_retried(res, worker, fakes, order):
    fakes["twilio"].opt_out(CUSTOMER)
    message_id = await send(res, order)
    await worker.run_until_idle()
    row = await message(res, message_id)
    assert (row.status, row.error_code) == ("failed", "OPTED_OUT")
    async with res.db.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "message.send"))
        activity = await session.scalar(select(Activity).where(Activity.order_id == order.id))
    assert (job.status, job.attempts) == ("done", 1)
    assert activity.kind == "message_failed" and activity.detail["code"] == "OPTED_OUT"


async def test_sender_rate_limit_defers_without_spending_attempts(
    res, worker, fakes, order, clock
):
    first = await send(res, order, key="a")
    second = await send(res, order, key="b")
    await worker.run_until_idle()
    assert len(fakes["twilio"].messages) == 1
    statuses = {(await message(res, m)).status for m in (first, second)}
    assert statuses == {"sent", "queued"}
    clock.advance(timedelta(seconds=1))
    await worker.run_until_idle()
    assert len(fakes["twilio"].messages) == 2
    async with res.db.sessions() as session:
        attempts = set(
            await session.scalars(select(Job.attempts).where(Job.kind == "message.send"))
        )
    assert attempts == {1}


async def test_unicode_sms_is_measured(res, worker, order):
    message_id = await send(res, order, body="आपका ऑर्डर #1001 रास्ते में है")
    await worker.run_until_idle()
    row = await message(res, message_id)
    assert (row.encoding, row.segments) == ("UCS-2", 1)


async def test_inbound_twilio_message_is_stored_and_forgery_refused(
    res, server, worker, fakes, order
):
    twilio = fakes["twilio"]
    url = str(server.make_url("/webhooks/twilio/messages"))
    forged, _ = await twilio.send_inbound(
        url, from_=CUSTOMER, to=SMS_FROM, body="1", auth_token="not-the-token"
    )
    assert forged == 403
    assert await count(res, WebhookReceipt) == 0
    await wrote_from(res, order, "twilio", SMS_FROM)
    status, body = await twilio.send_inbound(url, from_=CUSTOMER, to=SMS_FROM, body="Where is it?")
    assert status == 200 and "<Response" in body
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        inbound = await session.scalar(select(Message).where(Message.direction == "in"))
    assert (inbound.body, inbound.order_id, inbound.from_phone) == (
        "Where is it?",
        order.id,
        CUSTOMER,
    )


async def test_twilio_ivr_call_end_to_end(res, server, worker, fakes, order, clock):
    twilio = fakes["twilio"]
    async with res.db.transaction() as session:
        session.add(
            Call(
                shop_id=order.shop_id,
                order_id=order.id,
                provider="twilio",
                provider_call_id="CA" + "1" * 32,
                to_phone=CUSTOMER,
                status="queued",
                created_at=clock.now(),
            )
        )
    call_sid = "CA" + "1" * 32
    status, twiml = await twilio.post_voice(
        str(server.make_url("/webhooks/twilio/voice")), call_sid
    )
    assert status == 200
    gather = ET.fromstring(twiml).find("Gather")
    assert gather.get("numDigits") == "1"
    action = gather.get("action")
    assert action.endswith("/webhooks/twilio/voice/gather?try=1")
    spoken = gather.find("Say").text
    assert "1001" in spoken and "1499.00 rupees" in spoken and "Press 1" in spoken

    wrong, again = await twilio.send_gather(action, call_sid, "9")
    assert wrong == 200
    retry_action = ET.fromstring(again).find("Gather").get("action")
    assert retry_action.endswith("try=2")
    _, goodbye = await twilio.send_gather(action, call_sid, "1")
    assert ET.fromstring(goodbye).find("Hangup") is not None
    await worker.run_until_idle()

    done, _ = await twilio.send_call_status(
        str(server.make_url("/webhooks/twilio/voice/status")), call_sid, "completed", 42
    )
    assert done == 204
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        call = await session.scalar(select(Call))
    assert (call.input_digits, call.status, call.duration_seconds) == ("1", "completed", 42)

    forged, _ = await twilio.post_voice(
        str(server.make_url("/webhooks/twilio/voice")), call_sid, auth_token="wrong"
    )
    assert forged == 403


async def test_twilio_ivr_without_input_ends_as_no_input(res, server, worker, fakes, order, clock):
    twilio = fakes["twilio"]
    call_sid = "CA" + "2" * 32
    async with res.db.transaction() as session:
        session.add(
            Call(
                shop_id=order.shop_id,
                order_id=order.id,
                provider="twilio",
                provider_call_id=call_sid,
                to_phone=CUSTOMER,
                created_at=clock.now(),
            )
        )
    gather_url = str(server.make_url("/webhooks/twilio/voice/gather"))
    _, twiml = await twilio.send_gather(gather_url + "?try=2", call_sid, "")
    assert ET.fromstring(twiml).find("Hangup") is not None
    assert await count(res, WebhookReceipt, WebhookReceipt.topic == "KeypadInput") == 1


async def test_whatsapp_buttons_through_gupshup_and_its_callbacks(
    res, server, worker, fakes, order
):
    gupshup = fakes["gupshup"]
    buttons = [
        {"postback": "confirm:1001", "title": "Confirm"},
        {"postback": "cancel:1001", "title": "Cancel"},
    ]
    message_id = await send(
        res,
        order,
        channel="whatsapp",
        body="Confirm your COD order?",
        details={"buttons": buttons},
    )
    await worker.run_until_idle()
    [sent] = gupshup.messages
    assert sent["destination"] == CUSTOMER.removeprefix("+")
    assert [o["postbackText"] for o in sent["message"]["options"]] == [
        "confirm:1001",
        "cancel:1001",
    ]
    row = await message(res, message_id)
    assert (row.status, row.provider, row.channel) == ("sent", "gupshup", "whatsapp")

    token = shop_token(res.settings.secret_key(), PLATFORM)
    url = str(server.make_url(f"/webhooks/gupshup/{token}"))
    for _ in range(2):  # a repeated event is recorded once
        assert (
            await gupshup.send_event(
                url, gs_id=row.provider_message_id, status="delivered", destination=CUSTOMER
            )
        )[0] == 200
    assert (
        await gupshup.send_button_reply(
            url, from_phone=CUSTOMER, title="Confirm", postback="confirm:1001"
        )
    )[0] == 200
    forged = str(server.make_url("/webhooks/gupshup/1.forged-token"))
    assert (await gupshup.send_text(forged, from_phone=CUSTOMER, text="hi"))[0] == 404
    await worker.run_until_idle()
    assert (await message(res, message_id)).status == "delivered"
    async with res.db.sessions() as session:
        inbound = await session.scalar(select(Message).where(Message.direction == "in"))
        pressed = await session.scalar(select(Activity).where(Activity.kind == "message_received"))
    assert inbound.body == "Confirm" and pressed.detail["button"] == "confirm:1001"
    assert await count(res, WebhookReceipt) == 2


async def test_ringcentral_handshake_and_verified_deliveries(res, server, worker, fakes, order):
    ringcentral = fakes["ringcentral"]
    url = str(server.make_url("/webhooks/ringcentral"))
    handshake = await res.http.post(url, headers={"Validation-Token": "abc123"})
    assert handshake.status == 200 and handshake.headers["Validation-Token"] == "abc123"

    wrong, _ = await ringcentral.deliver_sms(
        url, from_phone=CUSTOMER, to_phone="+16505550100", text="STOP", verification_token="forged"
    )
    assert wrong == 403
    missing, _ = await ringcentral.deliver_sms(
        url, from_phone=CUSTOMER, to_phone="+16505550100", text="STOP", verification_token=""
    )
    assert missing == 403
    assert await count(res, WebhookReceipt) == 0
    await wrote_from(res, order, "ringcentral", "+16505550100")
    token = ringcentral_token(res.settings.secret_key())
    for _ in range(2):  # a repeated notification is recorded once
        ok, _ = await ringcentral.deliver_sms(
            url,
            from_phone=CUSTOMER,
            to_phone="+16505550100",
            text="When will it arrive?",
            message_id="1234567890",
            verification_token=token,
        )
        assert ok == 200
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        inbound = await session.scalar(select(Message).where(Message.direction == "in"))
    assert (inbound.provider, inbound.body) == ("ringcentral", "When will it arrive?")
    assert await count(res, Message, Message.direction == "in") == 1


async def shop_own_exotel(res, order, exotel) -> None:
    """The shop connects its own Exotel account and sends its SMS through it."""
    exotel.add_exophone("08047110000")
    desk = res.account_desk()
    account = await desk.connect(
        order.shop_id,
        {
            "provider": "exotel",
            "account_sid": exotel.account_sid,
            "api_key": exotel.api_key,
            "api_token": exotel.api_token,
            "numbers": ["08047110000"],
        },
    )
    await desk.choose(order.shop_id, {"sms": account["id"]})


async def test_shop_own_exotel_account_sends_and_reports(res, server, worker, fakes, order):
    exotel = fakes["exotel"]
    await shop_own_exotel(res, order, exotel)
    details = {"dlt_entity_id": "1101234567890123456", "dlt_template_id": "1107160000000012345"}
    async with res.db.transaction() as session:
        queued = await queue_message(
            session,
            res.queue,
            res.clock.now(),
            shop_id=order.shop_id,
            channel="sms",
            to=CUSTOMER,
            idempotency_key="exo-1",
            body="Your order #1001 is confirmed",
            sender="DEMOSH",
            order_id=order.id,
            details=details,
        )
    await worker.run_until_idle()
    [sent] = exotel.sms
    token = shop_token(res.settings.secret_key(), order.shop_id)
    assert sent["From"] == "DEMOSH" and sent["EncodingType"] == "plain"
    assert (sent["DltEntityId"], sent["DltTemplateId"]) == (
        details["dlt_entity_id"],
        details["dlt_template_id"],
    )
    assert sent["StatusCallback"].endswith(f"/webhooks/exotel/{token}/sms-status")
    row = await message(res, queued.id)
    assert (row.status, row.provider, row.account) == ("sent", "exotel", "shop")

    status_url = str(server.make_url(f"/webhooks/exotel/{token}/sms-status"))
    for _ in range(2):  # Exotel retries a callback: recorded once
        assert (
            await exotel.sms_status(
                status_url,
                sms_sid=row.provider_message_id,
                status="sent",
                detailed_status="DELIVERED_TO_HANDSET",
                detailed_status_code="20005",
            )
        )[0] == 200
    forged = str(server.make_url(f"/webhooks/exotel/{order.shop_id}.AAAA/sms-status"))
    assert (await exotel.sms_status(forged, sms_sid=row.provider_message_id, status="failed"))[
        0
    ] == 404
    await worker.run_until_idle()
    assert (await message(res, queued.id)).status == "delivered"
    assert await count(res, WebhookReceipt) == 1


async def test_exotel_passthru_brings_keypad_input_and_missed_calls(
    res, server, worker, fakes, order, clock
):
    exotel = fakes["exotel"]
    call_sid = "5979a54734e3bf7505cb8e41b96e1917"
    async with res.db.transaction() as session:
        session.add(
            Call(
                shop_id=order.shop_id,
                order_id=order.id,
                provider="exotel",
                provider_call_id=call_sid,
                to_phone=CUSTOMER,
                created_at=clock.now(),
            )
        )
    token = shop_token(res.settings.secret_key(), order.shop_id)
    url = str(server.make_url(f"/webhooks/exotel/{token}/passthru"))
    assert (
        await exotel.passthru(
            url,
            call_sid=call_sid,
            call_from=CUSTOMER,
            call_to="+918047113155",
            direction="outbound-dial",
            digits="2",
            custom_field=str(order.id),
        )
    )[0] == 200
    assert (
        await exotel.passthru(
            url,
            call_sid="9953099079d70b89bbc1aa43ae6d1893",
            call_from=CUSTOMER,
            call_to="+918069891522",
            direction="incoming",
        )
    )[0] == 200
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        call = await session.scalar(select(Call))
        missed = await session.scalar(select(MissedCallRow))
    assert call.input_digits == "2"
    assert (missed.shop_id, missed.from_phone) == (order.shop_id, CUSTOMER)


async def test_ringcentral_subscription_is_created_then_renewed(res, server, worker, fakes, clock):
    ringcentral = fakes["ringcentral"]
    async with res.db.transaction() as session:
        await res.queue.enqueue(session, check_now(clock.now()))
    await worker.run_until_idle()
    [subscription] = ringcentral.subscriptions.values()
    assert subscription.address == f"{res.settings.server.public_url}/webhooks/ringcentral"
    assert subscription.verification_token == ringcentral_token(res.settings.secret_key())

    first_expiry = subscription.expires_at
    clock.set(first_expiry - timedelta(hours=12))
    await worker.run_until_idle()
    assert list(ringcentral.subscriptions) == [subscription.id]
    assert ringcentral.subscriptions[subscription.id].expires_at > first_expiry
    async with res.db.sessions() as session:
        state = await session.get(ProviderState, "ringcentral.subscription")
    assert state.value["id"] == subscription.id


async def test_a_shops_own_ringcentral_account_has_its_own_subscription(
    res, server, worker, fakes, order, clock
):
    ringcentral = fakes["ringcentral"]
    ringcentral.add_number("+16505550177")
    desk = res.account_desk()
    account = await desk.connect(
        order.shop_id,
        {
            "provider": "ringcentral",
            "client_id": ringcentral.client_id,
            "client_secret": ringcentral.client_secret,
            "jwt": ringcentral.jwt,
            "sms_number": "+16505550177",
        },
    )
    await worker.run_until_idle()
    [subscription] = ringcentral.subscriptions.values()
    address = f"{res.settings.server.public_url}/webhooks/ringcentral?account={account['id']}"
    assert subscription.address == address
    own_token = ringcentral_token(res.settings.secret_key(), account["id"])
    assert (
        subscription.verification_token
        == own_token
        != ringcentral_token(res.settings.secret_key())
    )
    [listed] = [
        a for a in (await desk.setup(order.shop_id))["accounts"] if a["id"] == account["id"]
    ]
    assert "live until" in listed["paste"][0]["where"] and listed["paste"][0]["value"] == address

    # The platform's token does not speak for the shop's account, nor the reverse.
    platform_token = ringcentral_token(res.settings.secret_key())
    assert (
        await ringcentral.deliver_sms(
            address,
            from_phone=CUSTOMER,
            to_phone="+16505550177",
            text="x",
            verification_token=platform_token,
        )
    )[0] == 403
    ok, _ = await ringcentral.deliver_sms(
        address, from_phone=CUSTOMER, to_phone="+16505550177", text="Is it shipped?"
    )
    assert ok == 200
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        inbound = await session.scalar(select(Message).where(Message.direction == "in"))
    assert (inbound.shop_id, inbound.provider, inbound.body) == (
        order.shop_id,
        "ringcentral",
        "Is it shipped?",
    )


def sender_for(res, fakes, provider: str):
    """A MessageSender whose only route is `provider`'s account on its fake."""
    exotel = fakes["exotel"]
    clients = {
        "twilio": (res.clients.configured.twilio, "sms", SMS_FROM),
        "exotel": (
            ExotelClient(
                res.http,
                account_sid=exotel.account_sid,
                api_key=exotel.api_key,
                api_token=exotel.api_token,
                api_url=exotel.base_url,
            ),
            "sms",
            "DEMOSH",
        ),
        "gupshup": (res.clients.configured.gupshup, "whatsapp", fakes["gupshup"].source),
        "ringcentral": (res.clients.configured.ringcentral, "sms", "+16505550100"),
    }
    client, channel, sender = clients[provider]

    async def route(session, shop, wanted, via=""):
        assert wanted == channel
        return Route(provider, "platform", client, sender, 1.0)

    async def never_refused(account_id: int, reason: str) -> None:
        raise AssertionError(f"account {account_id} refused: {reason}")

    handler = MessageSender(res.db, res.clock, res.limiter, route, res.keys, never_refused)
    return handler, channel


def refuse_permanently(fakes, provider: str) -> tuple[dict, str]:
    """Make the fake refuse the customer for good; the send details and the expected code."""
    if provider == "twilio":
        fakes["twilio"].opt_out(CUSTOMER)
        return {}, "OPTED_OUT"
    if provider == "exotel":
        fakes["exotel"].reject_template("1107160000000099999")
        return {"dlt_template_id": "1107160000000099999"}, "TEMPLATE_NOT_APPROVED"
    if provider == "gupshup":
        fakes["gupshup"].invalid(CUSTOMER)
        return {}, "INVALID_NUMBER"
    fakes["ringcentral"].opt_out(CUSTOMER)
    return {}, "OPTED_OUT"


@pytest.mark.parametrize("provider", ["twilio", "exotel", "gupshup", "ringcentral"])
async def test_each_provider_retries_transient_failures_and_records_permanent_ones(
    res, fakes, order, clock, provider
):
    sender, channel = sender_for(res, fakes, provider)
    worker = Worker(
        res.queue,
        {SEND_JOB: sender.handle},
        clock=clock,
        settings=res.queue.settings,
        wakeup=res.db.wakeup,
    )
    fakes[provider].fail_next(1, status=503)
    first = await send(res, order, channel=channel, key="transient")
    await worker.run_until_idle()
    assert (await message(res, first)).status == "queued"
    async with res.db.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == SEND_JOB))
    clock.set(job.due_at)
    await worker.run_until_idle()
    row = await message(res, first)
    assert (row.status, row.provider) == ("sent", provider) and row.provider_message_id

    details, code = refuse_permanently(fakes, provider)
    clock.advance(timedelta(seconds=1))  # the sender's rate: one a second
    second = await send(res, order, channel=channel, key="permanent", details=details)
    await worker.run_until_idle()
    row = await message(res, second)
    assert (row.status, row.error_code) == ("failed", code)
    assert await count(res, Job, Job.status == "queued") == 0
