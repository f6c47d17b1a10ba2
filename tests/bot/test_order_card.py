"""The order card's live statuses and the partial refund in the chat, through the real bot, app
and webhook route against the fake Bot API and the sandbox's fake Shopify: open / archived /
cancelled, every payment status, shipments in transit with their date, out for delivery,
delivered, a tracking URL per line; lines picked with buttons or an amount typed, refused
beyond what is left or when unpaid, with the same answers as the admin API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.handlers import orders
from flows.shops import onboarding
from flows.shops.onboarding import ShopifyAccess
from storage.models import Order, Shop
from tests.bot.conftest import bot_settings
from tests.bot.test_orders import OWNER, last, press
from tests.web.test_order_actions import (
    CUSTOMER,
    DOMAIN,
    DUPATTA,
    KURTA,
    TOKEN,
    fake_shopify,
    refund_lines,
    stored,
    timeline,
    two_line_order,
)

TRACK = "https://www.delhivery.com/track/package/"


@pytest.fixture
async def shopify():
    fake = await fake_shopify()
    yield fake
    await fake.close()


@pytest.fixture
def settings(database_url, telegram, port, shopify):
    return bot_settings(
        database_url, telegram, port, shopify={"admin_url": shopify.admin_url_template}
    )


@pytest.fixture
async def shop(res, webhook, telegram, shopify) -> tuple[int, str]:
    """The demo shop connected to the fake Shopify, linked to OWNER: its id and API key."""
    done = await onboarding.create_shop(
        res.db, res.queue, res.box, res.clock, DOMAIN, ShopifyAccess(TOKEN)
    )
    async with res.db.transaction() as session:
        # As the connect job learns it from Shopify's shop settings.
        (await session.get(Shop, done.shop_id)).timezone = "Asia/Kolkata"
    await telegram.type(OWNER, f"/start {done.bot_link_code}")
    assert done.api_key is not None
    return done.shop_id, done.api_key


async def add_order(res, shopify, shop_id: int, payload: dict[str, Any]) -> None:
    """The order in the fake Shopify, and our copy of it as its webhook would have left it."""
    shopify.add_order(DOMAIN, payload)
    placed = res.clock.now() - timedelta(hours=1)
    async with res.db.transaction() as session:
        session.add(
            Order(
                shop_id=shop_id,
                shopify_order_id=str(payload["id"]),
                name=payload["name"],
                number=payload["order_number"],
                phone=CUSTOMER,
                total_amount=payload["total_price"],
                currency="INR",
                payment_method="prepaid",
                financial_status=payload["financial_status"],
                fulfillment_status=payload["fulfillment_status"] or "",
                items=[],
                verification_status="confirmed",
                placed_at=placed,
                created_at=placed,
                updated_at=placed,
            )
        )


def shipment(number: int, lines: list[tuple[int, int]], **fields: Any) -> dict[str, Any]:
    """A REST fulfillment of `lines` (line item id, quantity), tracked as DL<number>."""
    return {
        "id": 700 + number,
        "status": "success",
        "shipment_status": None,
        "tracking_company": "Delhivery",
        "tracking_number": f"DL{number}",
        "tracking_numbers": [f"DL{number}"],
        "tracking_url": f"{TRACK}DL{number}",
        "tracking_urls": [f"{TRACK}DL{number}"],
        "line_items": [{"id": item, "quantity": quantity} for item, quantity in lines],
        **fields,
    }


async def card(telegram, number: int) -> str:
    await telegram.type(OWNER, f"/order {number}")
    return last(telegram, OWNER).text


async def test_the_card_shows_seed_003s_statuses_as_shopify_holds_them(
    res, telegram, shopify, shop
):
    shop_id, _ = shop
    in_transit = shipment(
        1, [(KURTA, 2)], shipment_status="in_transit", estimated_delivery_at="2026-01-15T20:00:00Z"
    )
    orders_by_number = {
        # Kurtas on their way (the date is the shop's, Asia/Kolkata), the dupatta not shipped.
        2001: two_line_order(2001, "paid", "partial") | {"fulfillments": [in_transit]},
        # Both shipped apart: one out for delivery, one delivered; each line its own URL.
        2002: two_line_order(2002, "partially_paid", "fulfilled")
        | {
            "fulfillments": [
                shipment(2, [(KURTA, 2)], shipment_status="out_for_delivery"),
                shipment(3, [(DUPATTA, 1)], shipment_status="delivered"),
            ]
        },
        # Delivered and archived.
        2003: two_line_order(2003, "paid", "fulfilled")
        | {
            "closed_at": "2026-01-20T10:00:00Z",
            "fulfillments": [
                shipment(
                    4,
                    [(KURTA, 2), (DUPATTA, 1)],
                    shipment_status="delivered",
                    delivered_at="2026-01-18T09:00:00Z",
                )
            ],
        },
        2004: two_line_order(2004, "authorized", "fulfilled")
        | {
            "fulfillments": [
                shipment(5, [(KURTA, 2), (DUPATTA, 1)], shipment_status="ready_for_pickup")
            ]
        },
        2005: two_line_order(2005, "pending", "fulfilled")
        | {
            "fulfillments": [
                shipment(6, [(KURTA, 2), (DUPATTA, 1)], shipment_status="attempted_delivery")
            ]
        },
        2006: two_line_order(2006, "voided", None)
        | {"cancelled_at": "2026-01-06T08:00:00Z", "closed_at": "2026-01-06T08:00:00Z"},
    }
    for payload in orders_by_number.values():
        await add_order(res, shopify, shop_id, payload)

    text = await card(telegram, 2001)
    for line in (
        "Order status: Open",
        "Payment status: Paid",
        "Fulfilment status: Partially fulfilled",
        f"- Kurta × 2 (400.00) · In transit, arriving on 16 January 2026 · track: {TRACK}DL1",
        "- Dupatta × 1 (299.00)\n",
    ):
        assert line in text, (line, text)
    text = await card(telegram, 2002)
    for line in (
        "Payment status: Partially paid",
        "Fulfilment status: Out for delivery",
        f"- Kurta × 2 (400.00) · Out for delivery · track: {TRACK}DL2",
        f"- Dupatta × 1 (299.00) · Delivered · track: {TRACK}DL3",
    ):
        assert line in text, (line, text)
    text = await card(telegram, 2003)
    for line in (
        "Order status: Archived",
        "Fulfilment status: Delivered on 18 January 2026",
        f"- Dupatta × 1 (299.00) · Delivered on 18 January 2026 · track: {TRACK}DL4",
    ):
        assert line in text, (line, text)
    text = await card(telegram, 2004)
    assert "Payment status: Unpaid (authorized)" in text
    assert "Fulfilment status: Ready for pickup" in text
    text = await card(telegram, 2005)
    assert "Payment status: Unpaid" in text and "Fulfilment status: Attempted delivery" in text
    text = await card(telegram, 2006)
    assert "Order status: Cancelled" in text and "Payment status: Voided" in text
    assert "Fulfilment status: Unfulfilled" in text

    # Shopify unreachable: the statuses as last recorded, said so.
    shopify.fail_next(1)
    text = await card(telegram, 2003)
    assert "Order status: Open" in text and orders.NO_SHOPIFY in text


async def test_a_partial_refund_of_lines_picked_with_buttons(res, telegram, shopify, shop):
    shop_id, _ = shop
    await add_order(res, shopify, shop_id, two_line_order(2001, "paid", None))
    await card(telegram, 2001)
    await press(telegram, OWNER, "Partial refund")
    picker = last(telegram, OWNER)
    assert picker.text.startswith("What of #2001 is refunded?")
    assert picker.text.endswith("Chosen: nothing yet")
    # Each tap adds one, up to what is left, then back to none; the same message changes.
    for label in ("Kurta: 0 of 2", "Kurta: 1 of 2", "Kurta: 2 of 2", "Kurta: 0 of 2"):
        await press(telegram, OWNER, label)
    await press(telegram, OWNER, "Dupatta: 0 of 1")
    picker = last(telegram, OWNER)
    assert picker.edits == 5 and picker.text.endswith("Chosen: 1 × Kurta, 1 × Dupatta")
    await press(telegram, OWNER, "Refund the chosen lines")
    summary = last(telegram, OWNER).text
    assert summary.startswith("Refund 699.00 INR of #2001 for 1 × Kurta, 1 × Dupatta")
    assert shopify.order(DOMAIN, 9000 + 2001)["refunds"] == []
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.PARTIAL_REFUNDED.format(
        amount="699.00",
        currency="INR",
        name="#2001",
        lines=" for 1 × Kurta, 1 × Dupatta",
        payment="partially_refunded",
    )
    # Confirm tapped a second time: that refund is closed, nothing more is done.
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.NOT_OPEN
    in_shopify = shopify.order(DOMAIN, 9000 + 2001)
    assert refund_lines(in_shopify) == [(KURTA, 1), (DUPATTA, 1)]
    assert in_shopify.get("cancelled_at") is None
    ((kind, mode, detail),) = await timeline(res.db, 2001, shop_id)
    assert (kind, mode, detail["by"], detail["amount"]) == (
        "order_refunded",
        "merchant",
        f"User {OWNER} (telegram {OWNER})",
        "699.00",
    )
    text = await card(telegram, 2001)
    assert "Payment status: Partially refunded" in text and "Refunded: 699.00 INR" in text
    assert "- Kurta × 2 (400.00) · 1 refunded" in text
    assert f"order refunded (merchant) by User {OWNER}" in text

    # What is refunded is no longer offered: one kurta is left.
    await press(telegram, OWNER, "Partial refund")
    buttons = [text for row in last(telegram, OWNER).buttons for text, _ in row]
    assert buttons == ["Kurta: 0 of 1"]


async def test_a_partial_refund_by_a_typed_amount_and_the_apis_same_answers(
    res, telegram, shopify, shop, port
):
    shop_id, key = shop
    await add_order(res, shopify, shop_id, two_line_order(2001, "paid", "fulfilled"))
    await add_order(res, shopify, shop_id, two_line_order(2002, "pending", None))

    async def api(number: int, body: dict[str, Any], status: int = 409) -> dict[str, Any]:
        async with res.http.post(
            f"http://127.0.0.1:{port}/api/v1/orders/{number}/refund",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status == status
            answer = await response.json()
            return answer["error"] if status == 409 else answer

    # Unpaid: refused, as the API refuses it.
    await card(telegram, 2002)
    await press(telegram, OWNER, "Partial refund")
    unpaid = await api(2002, {"amount": "10.00"})
    assert last(telegram, OWNER).text == orders.REFUSED.format(rule=unpaid["message"])

    # Delivered: the return first (or none), then the amount.
    await card(telegram, 2001)
    await press(telegram, OWNER, "Partial refund")
    assert last(telegram, OWNER).text == orders.ASK_RETURN.format(name="#2001")
    await press(telegram, OWNER, "without return")
    await telegram.type(OWNER, "twelve")
    assert last(telegram, OWNER).text == orders.REFUSED.format(
        rule="must be an amount such as 250 or 250.50"
    )
    await telegram.type(OWNER, "5000")
    over = await api(2001, {"amount": "5000", "no_return": True})
    assert last(telegram, OWNER).text == orders.REFUSED.format(rule=over["message"])
    assert "more than the 1099.00 INR left to refund" in over["message"]
    await telegram.type(OWNER, "250.50")
    assert last(telegram, OWNER).text.startswith("Refund 250.50 INR of #2001 (reason CUSTOMER")
    # Refunded through the API meanwhile: the summary is stale, Confirm refuses it.
    await api(2001, {"amount": "10.00", "no_return": True}, status=200)
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.REFUSED.format(
        rule="10.00 INR of #2001 is refunded now, not 0.00: it changed since the summary; "
        "look at it again"
    )
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.NOT_OPEN
    await card(telegram, 2001)
    await press(telegram, OWNER, "Partial refund")
    await press(telegram, OWNER, "without return")
    await telegram.type(OWNER, "250.50")
    await press(telegram, OWNER, "Confirm")
    assert last(telegram, OWNER).text == orders.PARTIAL_REFUNDED.format(
        amount="250.50", currency="INR", name="#2001", lines="", payment="partially_refunded"
    )
    assert (await stored(res.db, shop_id, 2001)).financial_status == "partially_refunded"
    # A text after the refund is no amount any more: nothing else is refunded.
    await telegram.type(OWNER, "100")
    assert len(shopify.order(DOMAIN, 9000 + 2001)["refunds"]) == 2
