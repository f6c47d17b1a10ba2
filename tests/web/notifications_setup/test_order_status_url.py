"""The order status page (Shopify's `order_status_url`) kept with the order from its webhook
and from reconciliation's GraphQL `statusPageUrl`, and linked by the default confirmation."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from providers.sandbox.shopify import order_payload
from storage.models import Order
from tests.web.notifications.helpers import CONSENTING, NOTIFYING, paid_order, texts, webhook
from tests.web.notifications.test_api import call
from tests.web.test_shopify import DOMAIN

RECEIVED = {
    **NOTIFYING,
    "notifications": {**NOTIFYING["notifications"], "events": {}},
}


async def status_urls(journey) -> dict[str, str]:
    async with journey.res.db.sessions() as session:
        return dict((await session.execute(select(Order.name, Order.status_url))).all())


async def test_the_order_received_sms_links_the_order_status_page(journey):
    await journey.install(RECEIVED)
    order = await paid_order(journey)

    assert order["order_status_url"].startswith("https://")
    assert (await status_urls(journey))[order["name"]] == order["order_status_url"]
    assert texts(journey, CONSENTING) == [
        f"Hi Asha Rao, your Demo Store order {order['name']} has been received. You can view "
        f"your order details at {order['order_status_url']}. Reply STOP to opt-out."
    ]


async def test_without_a_status_page_the_sentence_is_left_out(journey):
    await journey.install(RECEIVED)
    for bad in (None, "javascript:alert(1)", 42):
        payload = order_payload(payment_gateway_names=["Razorpay"], financial_status="paid")
        payload["order_status_url"] = bad
        payload["customer"]["phone"] = CONSENTING
        payload["customer"]["sms_marketing_consent"]["state"] = "subscribed"
        for address in ("shipping_address", "billing_address"):
            payload[address] = {**payload[address], "phone": CONSENTING}
        journey.fake.add_order(DOMAIN, payload)
        await webhook(journey, "orders/create", payload)
        assert (await status_urls(journey))[payload["name"]] == ""
    bodies = texts(journey, CONSENTING)
    assert len(bodies) == 3
    assert all("view your order" not in body for body in bodies)
    assert all(body.endswith("has been received. Reply STOP to opt-out.") for body in bodies)


async def test_reconciliation_reads_the_status_page_from_graphql(journey):
    await journey.install(RECEIVED)
    payload = order_payload(payment_gateway_names=["Razorpay"], financial_status="paid")
    journey.fake.add_order(DOMAIN, payload)  # no webhook: only reconciliation finds it

    since = datetime(2020, 1, 1, tzinfo=UTC)
    orders, _ = await journey.res.shopify.orders_updated_since(
        DOMAIN, journey.fake.token(DOMAIN), since, page_size=50
    )
    (found,) = [o for o in orders if o["name"] == payload["name"]]
    assert found["order_status_url"] == payload["order_status_url"]


async def test_the_token_is_offered_and_previewed(journey):
    await journey.install(NOTIFYING)
    status, shown = await call(
        journey, "POST", "notifications/preview", {"event": "order_confirmed"}
    )
    assert status == 200
    assert "You can view your order details at https://demo.myshopify.com/orders/" in shown["text"]
    assert shown["unknown_tokens"] == []
