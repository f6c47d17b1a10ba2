"""Alerts pushed to the merchant's linked chats (issue 17), end to end: the real app with the
bot's webhook, the real worker, the fake Telegram Bot API and the providers' fakes over HTTP,
on SQLite and PostgreSQL. Each alert reaches the shop's linked chats and no other shop's; the
click-to-call button places the bridging call at the shop's voice provider; the daily summary
comes at its hour of the shop's time zone; a chat that blocked the bot is skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from flows.alerts.decide import (
    CALL,
    NEW_ORDER,
    SUMMARY,
    TEMPLATE_UNUSABLE,
    Action,
    Fact,
    Push,
    decide,
    summary_day,
)
from flows.alerts.scan import INTERVAL, MARGIN, first_scan
from flows.channels import accounts
from flows.channels.callback_urls import PLATFORM, shop_token
from flows.shops.settings import AlertSettings
from flows.shops.shopify_events import apply_order
from main import make_worker
from providers.sandbox.shopify import order_payload
from providers.sandbox.telegram import FakeTelegram
from settings import Settings
from storage.jobs import NewJob
from storage.models import Activity, BotLink, ProviderAccount, Shop
from storage.shops import issue_secrets
from tests.conftest import SECURITY
from tests.web import test_messaging
from tests.web.conversations.conftest import WHATSAPP_FIRST, add_shop, configure, settle, verify
from tests.web.test_messaging import CUSTOMER, SMS_FROM
from tests.web.test_verification_journeys import CALLER_ID, EXOTEL_ACCOUNT

fakes = test_messaging.fakes
OWNER, AGENT, OTHER = 1001, 1002, 2001
AGENT_PHONE = "+919811112222"


@pytest.fixture
def settings(database_url: str, fakes: Any, telegram: FakeTelegram, port: int) -> Settings:
    twilio, gupshup = fakes["twilio"], fakes["gupshup"]
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        telegram={"token": telegram.token, "api_url": telegram.base_url, "webhook": True},
        providers={
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "sms_from": SMS_FROM,
            },
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "exotel": {"api_url": fakes["exotel"].base_url},
        },
    )


@pytest.fixture
def worker(res):
    return make_worker(res)


async def link(res, telegram: FakeTelegram, shop_id: int, *chats: int) -> None:
    """Link the chats to the shop: the first as its owner, the others as its agents."""
    for chat in chats:
        async with res.db.transaction() as session:
            shop = await session.get(Shop, shop_id)
            code = issue_secrets(shop, res.clock.now()).bot_link_code
        assert await telegram.type(chat, f"/start {code}") == 200
    if len(chats) > 1:  # agents are linked with the owner's codes here: make them agents
        async with res.db.transaction() as session:
            for row in await session.scalars(
                select(BotLink).where(BotLink.chat_id.in_(chats[1:]))
            ):
                row.role = "agent"


async def scan(res, worker) -> None:
    """Let the next alerts scan come and everything it queued be delivered."""
    res.clock.advance(INTERVAL)
    await worker.run_until_idle()


def alerts(telegram: FakeTelegram, chat: int) -> list[str]:
    """The bot's messages in the chat after its "linked" answer."""
    return telegram.chat(chat).texts[1:]


async def two_shops(res, telegram: FakeTelegram, worker, document=WHATSAPP_FIRST):
    acme = await add_shop(res, "Acme", CUSTOMER, 1001, document)
    bolt = await add_shop(res, "Bolt", "+919800000001", 2001, document)
    await link(res, telegram, acme.shop_id, OWNER, AGENT)
    await link(res, telegram, bolt.shop_id, OTHER)
    async with res.db.transaction() as session:
        await res.queue.enqueue(session, first_scan(res.clock.now()))
    await worker.run_until_idle()
    return acme, bolt


ORDER = {
    "order": "#1001",
    "amount": "10.00",
    "currency": "INR",
    "payment_method": "cod",
    "phone": CUSTOMER,
}
NEW = f"New order #1001: 10.00 INR (cash on delivery), {CUSTOMER}."
CALLBACK = {"order": "#1001", "phone": CUSTOMER, "mode": "ivr", "activity_id": 7}
ASKED = f"Callback requested for order #1001 by {CUSTOMER} (by ivr)."
TOTALS = {"total": 2, "confirmed": 1, "cancelled": 0, "callback_requested": 0, "pending": 1}
DAY = {"shop": "Acme", "until": "2026-01-05 20:00", "totals": TOTALS}
UNUSABLE = {
    "template_id": "order_shipped_v2",
    "reason": "template is PAUSED",
    "event": "shipped",
    "order": "#1001",
    "fallback": "sms",
}
UNUSABLE_TEXT = (
    "Your WhatsApp template order_shipped_v2 cannot be used (template is PAUSED): the shipped "
    "notification for order #1001 was not sent on WhatsApp; it went by SMS instead. Fix the "
    "template with your provider, or turn the WhatsApp notification off."
)


@pytest.mark.parametrize(
    ("fact", "settings", "pushes"),
    [
        (Fact(NEW_ORDER, 1, "activity:3", ORDER), AlertSettings(), []),
        (
            Fact(NEW_ORDER, 1, "activity:3", ORDER),
            AlertSettings(new_orders=True),
            [Push(5, NEW, "alert:activity:3:5"), Push(6, NEW, "alert:activity:3:6")],
        ),
        (
            Fact("callback_requested", 1, "activity:7", CALLBACK),
            AlertSettings(),
            [
                Push(chat, ASKED, f"alert:activity:7:{chat}", Action(CALL, 7, f"Call {CUSTOMER}"))
                for chat in (5, 6)
            ],
        ),
        (
            Fact(
                SUMMARY, 1, "summary:1:2026-01-05", {"shop": "A", "until": "x", "totals": TOTALS}
            ),
            AlertSettings(daily_summary=False),
            [],
        ),
        (
            Fact(TEMPLATE_UNUSABLE, 1, "activity:9", UNUSABLE),
            AlertSettings(),
            [Push(chat, UNUSABLE_TEXT, f"alert:activity:9:{chat}") for chat in (5, 6)],
        ),
    ],
)
def test_what_each_chat_is_told(fact, settings, pushes):
    assert decide(fact, [5, 6], settings) == pushes


@pytest.mark.parametrize(
    ("utc", "zone", "hour", "day"),
    [
        (datetime(2026, 1, 5, 14, 30, tzinfo=UTC), "Asia/Kolkata", 20, "2026-01-05"),
        (datetime(2026, 1, 5, 14, 29, tzinfo=UTC), "Asia/Kolkata", 20, None),
        (datetime(2026, 3, 29, 18, 0, tzinfo=UTC), "Europe/Berlin", 20, "2026-03-29"),  # CEST
        (datetime(2026, 3, 28, 19, 0, tzinfo=UTC), "Europe/Berlin", 20, "2026-03-28"),  # CET
        (datetime(2026, 1, 5, 18, 59, tzinfo=UTC), "America/New_York", 13, "2026-01-05"),
    ],
)
def test_the_daily_summary_falls_due_in_its_local_hour(utc, zone, hour, day):
    assert summary_day(utc, zone, AlertSettings(summary_hour=hour)) == day


async def test_a_callback_request_reaches_the_shops_chats_and_the_button_bridges_the_call(
    res, webhook, telegram, fakes, worker
):
    acme, _ = await two_shops(res, telegram, worker)
    await callback_requested(res, webhook, fakes, worker, acme)

    expected = f"Callback requested for order #1001 by {CUSTOMER} (by whatsapp)."
    assert alerts(telegram, OWNER) == [expected]
    assert alerts(telegram, AGENT) == [expected]
    assert alerts(telegram, OTHER) == []

    # The agent presses "Call": asked for their phone once, then rung with the customer.
    alert = telegram.chat(AGENT).from_bot[-1]
    assert await telegram.press(AGENT, alert.message_id, alert.button_data("Call")) == 200
    assert "Which phone should I ring first?" in telegram.chat(AGENT).texts[-1]
    assert await telegram.type(AGENT, "not a phone") == 200
    assert telegram.chat(AGENT).texts[-1].startswith("That is not a phone number")
    assert await telegram.type(AGENT, AGENT_PHONE) == 200
    assert telegram.chat(AGENT).texts[-1] == (
        f"Calling you on {AGENT_PHONE}: answer, and {CUSTOMER} is dialled."
    )
    await worker.run_until_idle()
    [call] = [c for c in fakes["twilio"].placed_calls.values() if c["To"] == AGENT_PHONE]
    assert call["From"] == SMS_FROM
    assert f'<Dial callerId="{SMS_FROM}"' in call["Twiml"] and CUSTOMER in call["Twiml"]
    async with res.db.sessions() as session:
        placed = await session.scalar(select(Activity).where(Activity.kind == "click_to_call"))
        stored = await session.scalar(select(BotLink.phone).where(BotLink.chat_id == AGENT))
    assert (placed.order_id, placed.detail["chat_id"]) == (acme.id, AGENT)
    assert stored == AGENT_PHONE

    # Asked once: the next press rings at once.
    assert await telegram.press(AGENT, alert.message_id, alert.button_data("Call")) == 200
    await worker.run_until_idle()
    assert len([c for c in fakes["twilio"].placed_calls.values() if c["To"] == AGENT_PHONE]) == 2

    # Another shop's chat cannot use the button.
    own = telegram.chat(OTHER).from_bot[-1]
    assert await telegram.press(OTHER, own.message_id, alert.button_data("Call")) == 200
    assert telegram.chat(OTHER).callback_answers[-1].startswith("That callback request")


async def exotel_callback_requested(res, webhook, telegram, fakes, worker) -> int:
    """Acme's calls go through its own Exotel account, a customer asked for a callback and
    the owner gave their phone for click-to-call: the account's id."""
    document = {**WHATSAPP_FIRST, "ivr": {"caller_id": CALLER_ID, "flow_id": "214512"}}
    acme, _ = await two_shops(res, telegram, worker, document)
    for number in EXOTEL_ACCOUNT["numbers"]:
        fakes["exotel"].add_exophone(number)
    desk = res.account_desk()
    account = await desk.connect(acme.shop_id, EXOTEL_ACCOUNT)
    await desk.choose(acme.shop_id, {"voice": account["id"]})
    await configure(res, acme.shop_id, document)
    await callback_requested(res, webhook, fakes, worker, acme)
    assert await telegram.type(OWNER, f"/myphone {AGENT_PHONE}") == 200
    return account["id"]


async def test_click_to_call_through_the_shops_exotel_account_connects_the_two_numbers(
    res, webhook, telegram, fakes, worker
):
    await exotel_callback_requested(res, webhook, telegram, fakes, worker)
    assert telegram.chat(OWNER).texts[-1] == f"From now on I ring you on {AGENT_PHONE}."

    alert = telegram.chat(OWNER).from_bot[-2]
    assert alert.text.startswith("Callback requested for order #1001")
    assert await telegram.press(OWNER, alert.message_id, alert.button_data("Call")) == 200
    await worker.run_until_idle()
    [call] = fakes["exotel"].calls
    assert (call["From"], call["To"], call["CallerId"]) == (AGENT_PHONE, CUSTOMER, CALLER_ID)
    assert "Url" not in call


async def test_click_to_call_refused_credentials_mark_the_account_and_tell_the_agent(
    res, webhook, telegram, fakes, worker
):
    account_id = await exotel_callback_requested(res, webhook, telegram, fakes, worker)

    fakes["exotel"].api_token = "rotated-by-the-merchant"  # the stored token no longer works
    alert = telegram.chat(OWNER).from_bot[-2]
    assert await telegram.press(OWNER, alert.message_id, alert.button_data("Call")) == 200
    await worker.run_until_idle()
    assert fakes["exotel"].calls == []
    assert telegram.chat(OWNER).texts[-1] == (
        f"The call to {CUSTOMER} could not be placed: the shop's voice account was refused "
        "by its provider (/status)"
    )
    async with res.db.sessions() as session:
        stored = await session.get(ProviderAccount, account_id)
    assert stored.status == "rejected" and "401" in stored.status_reason


async def test_new_orders_refused_credentials_and_dead_jobs_reach_the_linked_chats(
    res, webhook, telegram, worker
):
    document = {**WHATSAPP_FIRST, "alerts": {"new_orders": True}}
    acme, bolt = await two_shops(res, telegram, worker, document)
    async with res.db.transaction() as session:
        shop = await session.get(Shop, acme.shop_id)
        payload = order_payload(name="#1002", total_price="250.00")
        await apply_order(session, shop, payload, res.clock.now(), "webhook")
        account = await session.scalar(
            select(ProviderAccount).where(
                ProviderAccount.shop_id == acme.shop_id, ProviderAccount.provider == "gupshup"
            )
        )
        await accounts.reject(session, account.id, "Authentication failed", res.clock.now())
        await res.queue.enqueue(
            session, NewJob("no.such.work", {}, shop_id=acme.shop_id, max_attempts=1)
        )
    await worker.run_until_idle()
    await scan(res, worker)

    # Delivered concurrently: in any order.
    texts = sorted(alerts(telegram, OWNER))
    assert len(texts) == 3, texts
    assert texts[0].startswith("New order #1002: 250.00")
    assert texts[2] == (
        "Your platform gupshup account was refused by gupshup: Authentication failed\n"
        "Its work waits until you fix the credentials (/status)."
    )
    assert texts[1].startswith("Work that failed for good: no.such.work (job ")
    assert sorted(alerts(telegram, AGENT)) == texts
    assert alerts(telegram, OTHER) == []

    # Read again by later scans, nothing is pushed twice.
    await scan(res, worker)
    assert len(alerts(telegram, OWNER)) == 3

    # New orders are alerted only when the shop asks for them.
    await configure(res, bolt.shop_id, WHATSAPP_FIRST)
    async with res.db.transaction() as session:
        shop = await session.get(Shop, bolt.shop_id)
        await apply_order(session, shop, order_payload(name="#2002"), res.clock.now(), "webhook")
    await scan(res, worker)
    assert alerts(telegram, OTHER) == []


async def test_a_chat_turns_its_alerts_off_and_a_chat_that_blocked_the_bot_is_skipped(
    res, webhook, telegram, worker
):
    document = {**WHATSAPP_FIRST, "alerts": {"new_orders": True}}
    acme, _ = await two_shops(res, telegram, worker, document)
    assert await telegram.type(OWNER, "/alerts off") == 200
    assert telegram.chat(OWNER).texts[-1].startswith("Alerts are off in this chat.")
    telegram.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await _order(res, acme.shop_id, "#1002")
    await scan(res, worker)
    async with res.db.sessions() as session:
        blocked = await session.scalar(select(BotLink.blocked_at).where(BotLink.chat_id == AGENT))
    assert blocked is not None
    assert alerts(telegram, AGENT) == []

    # Neither chat gets the next order; the owner turns alerts on again and gets the third.
    await _order(res, acme.shop_id, "#1003")
    await scan(res, worker)
    assert telegram.chat(OWNER).texts[-1].startswith("Alerts are off in this chat.")
    assert alerts(telegram, AGENT) == []
    res.clock.advance(MARGIN)  # what happened while off is past the next scans' margin
    await scan(res, worker)
    assert await telegram.type(OWNER, "/alerts on") == 200
    await _order(res, acme.shop_id, "#1004")
    await scan(res, worker)
    assert telegram.chat(OWNER).texts[-2].startswith("Alerts are on in this chat")
    assert telegram.chat(OWNER).texts[-1].startswith("New order #1004")
    assert alerts(telegram, AGENT) == []
    sends = [call for call in telegram.called("sendMessage") if int(call["chat_id"]) == AGENT]
    assert len(sends) == 2  # "linked", then the refused alert: none after it


async def test_a_telegram_server_error_is_retried_by_the_job_system(
    res, webhook, telegram, worker
):
    document = {**WHATSAPP_FIRST, "alerts": {"new_orders": True}}
    acme, _ = await two_shops(res, telegram, worker, document)
    assert await telegram.type(AGENT, "/alerts off") == 200
    telegram.fail_next("sendMessage", 500, "Internal Server Error")
    await _order(res, acme.shop_id, "#1002")
    await scan(res, worker)
    assert alerts(telegram, OWNER) == []
    res.clock.advance(timedelta(seconds=res.settings.jobs.backoff_base_seconds))
    await worker.run_until_idle()
    assert [text[:15] for text in alerts(telegram, OWNER)] == ["New order #1002"]


async def test_the_daily_summary_comes_at_its_hour_of_the_shops_time_zone_once(
    res, webhook, telegram, worker
):
    # 20:00 in Kolkata is 14:30 UTC.
    res.clock.advance(datetime(2026, 1, 5, 14, 0, tzinfo=UTC) - res.clock.now())
    document = {**WHATSAPP_FIRST, "alerts": {"summary_hour": 20}}
    acme, bolt = await two_shops(res, telegram, worker, document)
    async with res.db.transaction() as session:
        for shop_id in (acme.shop_id, bolt.shop_id):
            (await session.get(Shop, shop_id)).timezone = "Asia/Kolkata"
        (await session.get(Shop, bolt.shop_id)).settings = {"alerts": {"daily_summary": False}}
    await verify(res, worker, acme)
    await scan(res, worker)
    assert alerts(telegram, OWNER) == []

    res.clock.advance(datetime(2026, 1, 5, 14, 30, tzinfo=UTC) - res.clock.now())
    await scan(res, worker)
    summary = (
        "Acme: the last 24 hours up to 2026-01-05 20:00\nOrders: 1\nConfirmed: 0\n"
        "Cancelled: 0\nCallback requested: 0\nPending: 1"
    )
    assert alerts(telegram, OWNER) == [summary]
    assert alerts(telegram, AGENT) == [summary]
    res.clock.advance(timedelta(minutes=20))
    await scan(res, worker)
    assert alerts(telegram, OWNER) == [summary]
    assert alerts(telegram, OTHER) == []


async def callback_requested(res, webhook, fakes, worker, order) -> None:
    """The order's verification asks on WhatsApp; the customer presses "Call me"."""
    await verify(res, worker, order)
    token = shop_token(res.settings.secret_key(), PLATFORM)
    url = str(webhook.server.make_url(f"/webhooks/gupshup/{token}"))
    status, _ = await fakes["gupshup"].send_text(url, from_phone=CUSTOMER, text="3")
    assert status == 200
    await settle(res, worker)
    await scan(res, worker)


async def _order(res, shop_id: int, name: str) -> None:
    async with res.db.transaction() as session:
        shop = await session.get(Shop, shop_id)
        await apply_order(session, shop, order_payload(name=name), res.clock.now(), "webhook")
