"""A WhatsApp notification refused for being outside the customer's 24-hour service window
falls back to the event's SMS when the shop allows it, and alerts the merchant: through the
real app, notification and send jobs, against the fake Twilio answering error 63016 when the
message is created, or in the message's status callback after it was accepted (for
Gupshup's message-event: tests/web/notifications/test_whatsapp.py). Without the shop's
fallback the notification is not sent, and the alert says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from flows.conversations import consent
from providers.sandbox.shopify import order_payload
from storage.models import Message, Shop
from tests.web import test_twilio_shop as twilio_shop
from tests.web.notifications.helpers import fulfillment, timeline
from tests.web.notifications.test_whatsapp import TEXT
from tests.web.test_shopify import DOMAIN, connect, url

# The Twilio shop's fixtures: the app, the worker, the fake Shopify and Twilio.
browser, port, server = twilio_shop.browser, twilio_shop.port, twilio_shop.server
settings, shopify, twilio = twilio_shop.settings, twilio_shop.shopify, twilio_shop.twilio
NUMBER, CUSTOMER = twilio_shop.NUMBER, twilio_shop.CUSTOMER
CONTENT = "HX" + "0123456789abcdef" * 2
OUTSIDE_WINDOW = 63016


class TwilioShop:
    """A shop whose SMS and WhatsApp go through its own Twilio account."""

    def __init__(self, browser, server, worker, twilio, shopify, res) -> None:
        self.browser, self.server, self.worker = browser, server, worker
        self.twilio, self.shopify, self.res = twilio, shopify, res
        self.headers: dict[str, str] = {}

    async def install(self, fallback: bool = True) -> None:
        issued = await connect(self.browser, self.server, self.worker)
        self.headers = {"Authorization": f"Bearer {issued['api_key']}"}
        document = await self.api("GET", "shop/settings")
        notifications = document["notifications"]
        notifications["sms_active"] = True
        for event in ("order_created", "shipped"):  # the shipped one: WhatsApp only
            notifications["events"][event]["sms"]["active"] = False
        await self.api("PUT", "shop/settings", document)
        account = {
            "provider": "twilio",
            "account_sid": self.twilio.account_sid,
            "auth_token": self.twilio.auth_token,
            "numbers": [NUMBER],
            "whatsapp_number": NUMBER,
        }
        await self.api("POST", "shop/accounts", account, expect=201)
        self.twilio.add_content(CONTENT, TEXT, "approved")
        body = {
            "active": True,
            "template_id": CONTENT,
            "params": ["firstname", "ordername", "trackingurl"],
            "fallback_to_sms": fallback,
        }
        await self.api("PUT", "notifications/whatsapp/shipped", body)

    async def api(self, method: str, path: str, body=None, expect: int = 200):
        async with self.browser.request(
            method, url(self.server, f"/api/v1/{path}"), json=body, headers=self.headers
        ) as response:
            assert response.status == expect, await response.text()
            return await response.json()

    async def shipped(self) -> dict:
        """A prepaid order of a customer opted in to SMS and WhatsApp, then its fulfilment."""
        self.res.clock.advance(timedelta(seconds=1))
        order = order_payload(payment_gateway_names=["Razorpay"], financial_status="paid")
        order["customer"]["phone"] = CUSTOMER
        order["customer"]["sms_marketing_consent"]["state"] = "subscribed"
        for address in ("shipping_address", "billing_address"):
            order[address] = {**order[address], "phone": CUSTOMER, "country_code": "US"}
        self.shopify.add_order(DOMAIN, order)
        await self.webhook("orders/create", order)
        async with self.res.db.transaction() as session:
            shop_id = await session.scalar(select(Shop.id))
            await consent.record(
                session,
                self.res.clock.now(),
                shop_id=shop_id,
                phone=CUSTOMER,
                channel="whatsapp",
                state=consent.OPTED_IN,
                source="inbound",
            )
        await self.webhook("fulfillments/create", fulfillment(order))
        return order

    async def webhook(self, topic: str, payload: dict) -> None:
        endpoint = url(self.server, "/webhooks/shopify")
        assert await self.shopify.send_webhook(endpoint, topic, DOMAIN, payload) == 200
        await self.run()

    async def run(self) -> None:
        """Run the jobs, and the sends the account's rate deferred by a second or two."""
        await self.worker.run_until_idle()
        self.res.clock.advance(timedelta(seconds=2))
        await self.worker.run_until_idle()

    def sent(self, whatsapp: bool) -> list[dict]:
        return [m for m in self.twilio.accepted_messages.values() if whatsapp == _whatsapp(m)]


def _whatsapp(form: dict) -> bool:
    return str(form["To"]).startswith("whatsapp:")


@pytest.fixture
def shop(browser, server, worker, twilio, shopify, resources) -> TwilioShop:
    return TwilioShop(browser, server, worker, twilio, shopify, resources)


async def whatsapp_message(shop: TwilioShop) -> Message:
    async with shop.res.db.sessions() as session:
        return await session.scalar(
            select(Message).where(Message.channel == "whatsapp").order_by(Message.id.desc())
        )


async def test_refused_when_created_the_notification_goes_by_sms(shop: TwilioShop):
    await shop.install()
    await shop.shipped()  # the first goes by WhatsApp (and the template's state is known)
    assert len(shop.sent(whatsapp=True)) == 1 and shop.sent(whatsapp=False) == []

    shop.twilio.fail_next(1, 400, code=OUTSIDE_WINDOW)
    order = await shop.shipped()
    message = await whatsapp_message(shop)
    assert (message.status, message.error_code) == ("failed", "OUTSIDE_SESSION_WINDOW")
    (sms,) = shop.sent(whatsapp=False)
    assert sms["To"] == CUSTOMER and order["name"] in sms["Body"]
    assert "has been fulfilled by Delhivery" in sms["Body"]
    (alert,) = await timeline(shop, "notification_fallback")
    assert alert["fallback"] == "sms" and alert["template_id"] == CONTENT
    assert alert["status"] == "OUTSIDE_SESSION_WINDOW" and "63016" in alert["reason"]


async def test_refused_after_it_was_accepted_the_notification_goes_by_sms(shop: TwilioShop):
    await shop.install()
    order = await shop.shipped()
    (accepted,) = [sid for sid, m in shop.twilio.accepted_messages.items() if _whatsapp(m)]
    status_url = url(shop.server, "/webhooks/twilio/status")
    for _ in range(2):  # Twilio may report it twice: one SMS
        answer = await shop.twilio.send_status(status_url, accepted, "failed", str(OUTSIDE_WINDOW))
        assert answer[0] == 204
        await shop.run()
    (sms,) = shop.sent(whatsapp=False)
    assert order["name"] in sms["Body"]
    (alert,) = await timeline(shop, "notification_fallback")
    assert alert["fallback"] == "sms" and alert["status"] == "OUTSIDE_SESSION_WINDOW"


async def test_without_the_shops_fallback_nothing_more_is_sent_and_the_merchant_is_told(
    shop: TwilioShop,
):
    await shop.install(fallback=False)
    await shop.shipped()
    shop.twilio.fail_next(1, 400, code=OUTSIDE_WINDOW)
    await shop.shipped()
    assert shop.sent(whatsapp=False) == []
    (alert,) = await timeline(shop, "notification_fallback")
    assert alert["fallback"] == ""
