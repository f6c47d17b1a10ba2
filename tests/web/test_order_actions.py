"""The merchant's order actions in the admin API, `POST /api/v1/orders/{name}/cancel` and
`/refund`, against the sandbox's fake Shopify on loopback: seed 003's rules followed (paid and
not delivered: cancel and refund in one step; unpaid: cancel without refund; delivered: refund
after the return or without one when said so) and refused where they refuse, with the result
from Shopify on the order's timeline (mode `merchant`, by `api`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from providers.sandbox.shopify import FakeShopify
from settings import Settings
from storage.models import Activity, Order
from tests.conftest import SECURITY

ADMIN = "platform-admin-token-0123456789abcdef"
DOMAIN, OTHER_DOMAIN = "demo.myshopify.com", "other.myshopify.com"
TOKEN, OTHER_TOKEN = "shpat_demo_token", "shpat_other_token"
CUSTOMER = "+919876543210"

# Order number -> (financial status, fulfilment status) in Shopify and in our copy.
ORDERS = {
    1001: ("paid", None),  # prepaid, not shipped
    1002: ("pending", None),  # cash on delivery
    1003: ("paid", "fulfilled"),  # delivered
    1004: ("pending", "fulfilled"),  # delivered, not paid
    1005: ("paid", "fulfilled"),
}


async def fake_shopify() -> FakeShopify:
    """The sandbox's Shopify, started, with the two shops of these tests installed."""
    fake = FakeShopify()
    await fake.start()
    fake.add_shop(DOMAIN, TOKEN, name="Demo")
    fake.add_shop(OTHER_DOMAIN, OTHER_TOKEN, name="Other")
    return fake


@pytest.fixture
async def shopify():
    fake = await fake_shopify()
    yield fake
    await fake.close()


def shopify_settings(database_url: str, shopify: FakeShopify, **extra: Any) -> Settings:
    return Settings(
        database={"url": database_url},
        security={**SECURITY, "admin_token": ADMIN},
        shopify={"admin_url": shopify.admin_url_template},
        **extra,
    )


@pytest.fixture
def settings(database_url, shopify):
    return shopify_settings(database_url, shopify)


@pytest.fixture
async def client(aiohttp_client, app_factory, db, queue):
    return await aiohttp_client(app_factory(db, queue))


def shopify_order(number: int, financial: str, fulfillment: str | None) -> dict[str, Any]:
    return {
        "id": 9000 + number,
        "name": f"#{number}",
        "order_number": number,
        "created_at": "2026-01-05T08:00:00Z",
        "currency": "INR",
        "total_price": "499.00",
        "financial_status": financial,
        "fulfillment_status": fulfillment,
        "payment_gateway_names": ["razorpay" if financial == "paid" else "Cash on Delivery"],
        "line_items": [{"id": 1, "title": "Kurta", "quantity": 1, "price": "499.00"}],
    }


async def add_orders(db, shopify: FakeShopify, domain: str, shop_id: int, now) -> None:
    """Every order of ORDERS in the fake Shopify's shop and as our copy of it."""
    async with db.transaction() as session:
        for number, (financial, fulfillment) in ORDERS.items():
            shopify.add_order(domain, shopify_order(number, financial, fulfillment))
            placed = now - timedelta(hours=number - 1000)
            session.add(
                Order(
                    shop_id=shop_id,
                    shopify_order_id=str(9000 + number),
                    name=f"#{number}",
                    number=number,
                    phone=CUSTOMER,
                    total_amount="499.00",
                    currency="INR",
                    payment_method="prepaid" if financial == "paid" else "cod",
                    financial_status=financial,
                    fulfillment_status=fulfillment or "",
                    items=[{"title": "Kurta", "quantity": 1, "price": "499.00"}],
                    verification_status="confirmed",
                    placed_at=placed,
                    created_at=placed,
                    updated_at=placed,
                )
            )


async def new_shop(client, domain: str, token: str) -> tuple[int, str]:
    response = await client.post(
        "/api/v1/shops",
        json={"domain": domain, "access_token": token},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    return body["shop"]["id"], body["api_key"]


async def timeline(db, number: int, shop_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    async with db.sessions() as session:
        order = await session.scalar(
            select(Order).where(Order.shop_id == shop_id, Order.number == number)
        )
        rows = await session.scalars(
            select(Activity).where(Activity.order_id == order.id).order_by(Activity.id)
        )
        return [(row.kind, row.mode, row.detail) for row in rows]


async def stored(db, shop_id: int, number: int) -> Order:
    async with db.sessions() as session:
        return await session.scalar(
            select(Order).where(Order.shop_id == shop_id, Order.number == number)
        )


@pytest.fixture
async def shop(client, db, shopify, clock):
    shop_id, key = await new_shop(client, DOMAIN, TOKEN)
    await add_orders(db, shopify, DOMAIN, shop_id, clock.now())
    return shop_id, key


async def post(client, key: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        f"/api/v1/orders/{path}", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    return response.status, await response.json()


async def test_cancel_follows_seed_003(client, db, shopify, shop):
    shop_id, key = shop
    # Paid and not delivered: cancelled and refunded in one step.
    status, body = await post(client, key, "1001/cancel", {"reason": "CUSTOMER"})
    assert status == 200, body
    assert body | {"financial_status": None} == {
        "cancelled": True,
        "refunded": True,
        "reason": "CUSTOMER",
        "amount": "499.00",
        "currency": "INR",
        "line_items": [],
        "financial_status": None,
    }
    assert body["financial_status"] == "refunded"
    cancellation = shopify.cancellations[-1]
    assert (cancellation["order_id"], cancellation["refund"], cancellation["reason"]) == (
        10001,
        True,
        "CUSTOMER",
    )
    assert shopify.order(DOMAIN, 10001)["financial_status"] == "refunded"
    ((kind, mode, detail),) = await timeline(db, 1001, shop_id)
    assert (kind, mode, detail["by"], detail["refund"]) == (
        "order_cancelled",
        "merchant",
        "api",
        True,
    )
    order = await stored(db, shop_id, 1001)
    assert order.cancelled_at is not None and order.financial_status == "refunded"

    # Unpaid: cancelled without refund (Shopify voids it); a refund asked for is refused.
    status, body = await post(client, key, "1002/cancel", {"reason": "OTHER", "refund": True})
    assert status == 409 and body["error"]["fields"][0]["field"] == "refund"
    assert "cancelled without refund" in body["error"]["message"]
    status, body = await post(client, key, "%231002/cancel", {"reason": "FRAUD", "restock": False})
    assert status == 200, body
    assert (body["refunded"], body["amount"], body["financial_status"]) == (False, None, "voided")
    assert shopify.cancellations[-1]["restock"] is False

    # Once cancelled, not again; delivered, not at all; a reason Shopify has not, never.
    status, body = await post(client, key, "1001/cancel", {"reason": "CUSTOMER"})
    assert status == 409 and "cancelled already" in body["error"]["message"]
    status, body = await post(client, key, "1003/cancel", {"reason": "CUSTOMER"})
    assert status == 409 and "only orders not delivered" in body["error"]["message"]
    status, body = await post(client, key, "1004/cancel", {"reason": "customer please"})
    assert status == 422 and body["error"]["fields"][0]["field"] == "reason"
    status, body = await post(client, key, "1004/cancel", {"reason": "STAFF", "items": [1]})
    assert status == 422 and body["error"]["fields"][0]["field"] == "items"
    status, body = await post(client, key, "4242/cancel", {"reason": "STAFF"})
    assert status == 404
    assert len(shopify.cancellations) == 2


async def test_refund_follows_seed_003(client, db, shopify, shop):
    shop_id, key = shop
    # Unpaid: nothing to refund.
    status, body = await post(client, key, "1002/refund", {})
    assert status == 409 and "only a paid order is refunded" in body["error"]["message"]
    # Delivered: only once the return arrived, or without a return when the merchant says so.
    status, body = await post(client, key, "1003/refund", {})
    assert status == 409 and body["error"]["fields"][0]["field"] == "returned"
    assert "after its return arrived" in body["error"]["message"]
    status, body = await post(client, key, "1003/refund", {"returned": True})
    assert status == 200, body
    assert (body["cancelled"], body["refunded"], body["financial_status"]) == (
        False,
        True,
        "refunded",
    )
    refunds = shopify.order(DOMAIN, 10003)["refunds"]
    assert len(refunds) == 1 and "by api" in refunds[0]["note"]
    (row,) = await timeline(db, 1003, shop_id)
    assert row[:2] == ("order_refunded", "merchant") and row[2]["amount"] == "499.00"
    status, body = await post(client, key, "1005/refund", {"no_return": True})
    assert status == 200 and body["financial_status"] == "refunded"
    # Refunded already (as Shopify answered the refund): refused.
    status, body = await post(client, key, "1005/refund", {"no_return": True})
    assert status == 409 and "only a paid order" in body["error"]["message"]

    # Paid and not delivered: cancelled and refunded in one step.
    status, body = await post(client, key, "1001/refund", {"reason": "INVENTORY"})
    assert status == 200 and body["cancelled"] and body["refunded"]
    assert shopify.cancellations[-1]["reason"] == "INVENTORY"
    assert shopify.cancellations[-1]["refund"] is True
    status, body = await post(client, key, "1001/refund", {"returned": "yes"})
    assert status == 422 and body["error"]["fields"][0]["field"] == "returned"


async def test_a_shopify_refusal_is_a_502_on_the_timeline(client, db, shopify, shop):
    shop_id, key = shop
    # Shopify has no captured payment of it (our copy says paid).
    shopify.add_order(DOMAIN, shopify_order(1003, "pending", "fulfilled"))
    status, body = await post(client, key, "1003/refund", {"returned": True})
    assert status == 502 and body["error"]["code"] == "shopify_failed"
    (row,) = await timeline(db, 1003, shop_id)
    assert row[0] == "shopify_action_failed" and row[1] == "merchant" and row[2]["by"] == "api"


async def test_another_shops_key_acts_on_nothing_of_this_shop(client, db, shopify, shop):
    shop_id, _ = shop
    _, other_key = await new_shop(client, OTHER_DOMAIN, OTHER_TOKEN)
    status, _ = await post(client, other_key, "1001/cancel", {"reason": "CUSTOMER"})
    assert status == 404
    status, _ = await post(client, other_key, "1003/refund", {"no_return": True})
    assert status == 404
    status, _ = await post(client, "not-a-key", "1001/cancel", {"reason": "CUSTOMER"})
    assert status == 401
    assert shopify.cancellations == [] and await timeline(db, 1001, shop_id) == []


async def test_a_shop_not_connected_to_shopify_is_refused(client, db, shopify, clock):
    response = await client.post(
        "/api/v1/shops",
        json={"domain": "unconnected.myshopify.com"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    body = await response.json()
    await add_orders(db, shopify, DOMAIN, body["shop"]["id"], clock.now())
    status, refused = await post(client, body["api_key"], "1001/cancel", {"reason": "STAFF"})
    assert status == 409 and refused["error"]["fields"][0]["field"] == "shop"
    assert "not connected to Shopify" in refused["error"]["message"]
    assert shopify.cancellations == []


# Partial refunds: chosen lines and/or an amount, the order kept -----------------------------

KURTA, DUPATTA = 61, 62


def two_line_order(number: int, financial: str, fulfillment: str | None) -> dict[str, Any]:
    """2 kurtas at 400.00 and a dupatta at 299.00: 1099.00."""
    return shopify_order(number, financial, fulfillment) | {
        "total_price": "1099.00",
        "line_items": [
            {"id": KURTA, "title": "Kurta", "quantity": 2, "price": "400.00"},
            {"id": DUPATTA, "title": "Dupatta", "quantity": 1, "price": "299.00"},
        ],
    }


async def add_two_line_order(
    db, shopify: FakeShopify, shop_id: int, number: int, financial: str, fulfillment: str | None
) -> None:
    """The order in the fake Shopify and our copy of it, as its webhook would have left it."""
    shopify.add_order(DOMAIN, two_line_order(number, financial, fulfillment))
    async with db.transaction() as session:
        order = await session.scalar(
            select(Order).where(Order.shop_id == shop_id, Order.number == number)
        )
        order.total_amount = "1099.00"
        order.financial_status = financial
        order.fulfillment_status = fulfillment or ""


def refund_lines(domain_order: dict[str, Any]) -> list[tuple[int, int]]:
    return [
        (line["line_item_id"], line["quantity"])
        for refund in domain_order["refunds"]
        for line in refund["refund_line_items"]
    ]


async def test_a_partial_refund_by_lines_by_amount_and_both(client, db, shopify, shop):
    shop_id, key = shop
    await add_two_line_order(db, shopify, shop_id, 1001, "paid", None)
    # One of the two kurtas: Shopify suggests its price; the order is kept, not cancelled.
    status, body = await post(
        client, key, "1001/refund", {"line_items": [{"id": KURTA, "quantity": 1}]}
    )
    assert status == 200, body
    assert body == {
        "cancelled": False,
        "refunded": True,
        "reason": "CUSTOMER",
        "amount": "400.00",
        "currency": "INR",
        "line_items": [{"title": "Kurta", "quantity": 1}],
        "financial_status": "partially_refunded",
    }
    in_shopify = shopify.order(DOMAIN, 10001)
    assert refund_lines(in_shopify) == [(KURTA, 1)]
    assert in_shopify["refunds"][0]["transactions"][0]["amount"] == "400.00"
    assert in_shopify.get("cancelled_at") is None and shopify.cancellations == []
    ((kind, mode, detail),) = await timeline(db, 1001, shop_id)
    assert (kind, mode, detail["by"], detail["partial"]) == (
        "order_refunded",
        "merchant",
        "api",
        True,
    )
    assert (detail["amount"], detail["line_items"]) == (
        "400.00",
        [{"title": "Kurta", "quantity": 1}],
    )
    assert (await stored(db, shop_id, 1001)).financial_status == "partially_refunded"

    # An amount alone (a gid names a line as well as its number does).
    status, body = await post(client, key, "1001/refund", {"amount": "150.50"})
    assert status == 200 and (body["amount"], body["line_items"]) == ("150.50", [])
    # The dupatta, for less than its price.
    dupatta = f"gid://shopify/LineItem/{DUPATTA}"
    status, body = await post(
        client,
        key,
        "1001/refund",
        {"line_items": [{"id": dupatta, "quantity": 1}], "amount": "100"},
    )
    assert status == 200 and body["amount"] == "100.00"
    assert refund_lines(shopify.order(DOMAIN, 10001)) == [(KURTA, 1), (DUPATTA, 1)]
    assert body["financial_status"] == "partially_refunded"

    # What is left is 1099.00 - 650.50 = 448.50: the second kurta's 400.00 fits, 500 does not.
    status, body = await post(client, key, "1001/refund", {"amount": "500.00"})
    assert status == 409 and body["error"]["fields"][0]["field"] == "amount"
    assert "more than the 448.50 INR left to refund" in body["error"]["message"]
    status, body = await post(
        client, key, "1001/refund", {"line_items": [{"id": KURTA, "quantity": 2}]}
    )
    assert status == 409 and body["error"]["fields"][0]["field"] == "line_items[0].quantity"
    assert "1 of Kurta can still be refunded" in body["error"]["message"]
    status, body = await post(
        client, key, "1001/refund", {"line_items": [{"id": DUPATTA, "quantity": 1}]}
    )
    assert status == 409 and "Dupatta is refunded already" in body["error"]["message"]
    status, body = await post(
        client, key, "1001/refund", {"line_items": [{"id": 5, "quantity": 1}]}
    )
    assert status == 409 and body["error"]["fields"][0]["field"] == "line_items[0].id"
    assert len(shopify.order(DOMAIN, 10001)["refunds"]) == 3

    # The rest, to the last paisa: refunded.
    status, body = await post(client, key, "1001/refund", {"amount": "448.50"})
    assert status == 200 and body["financial_status"] == "refunded"
    status, body = await post(client, key, "1001/refund", {"amount": "1.00"})
    assert status == 409 and "only a paid order" in body["error"]["message"]


async def test_a_partial_refund_follows_seed_003_and_names_bad_fields(client, db, shopify, shop):
    shop_id, key = shop
    # Unpaid: nothing to refund, in part either.
    status, body = await post(client, key, "1002/refund", {"amount": "10.00"})
    assert status == 409 and "only a paid order is refunded" in body["error"]["message"]
    # Delivered: after the return arrived, or without one when said so.
    await add_two_line_order(db, shopify, shop_id, 1003, "paid", "fulfilled")
    only = {"line_items": [{"id": KURTA, "quantity": 1}]}
    status, body = await post(client, key, "1003/refund", only)
    assert status == 409 and body["error"]["fields"][0]["field"] == "returned"
    status, body = await post(client, key, "1003/refund", only | {"returned": True})
    assert status == 200 and (body["amount"], body["cancelled"]) == ("400.00", False)
    # Its whole total would now be more than is left: the rest is refunded as an amount.
    status, body = await post(client, key, "1003/refund", {"returned": True})
    assert status == 409 and body["error"]["fields"][0]["field"] == "amount"
    assert "refund the rest as a partial refund" in body["error"]["message"]

    for bad, field in (
        ({"amount": "12.345"}, "amount"),
        ({"amount": 12}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"line_items": []}, "line_items"),
        ({"line_items": [{"id": KURTA, "quantity": 0}]}, "line_items.0.quantity"),
        ({"line_items": [{"id": KURTA}]}, "line_items.0.quantity"),
        ({"line_items": [{"id": KURTA, "quantity": 1, "price": "1"}]}, "line_items.0.price"),
    ):
        status, body = await post(client, key, "1003/refund", bad | {"returned": True})
        assert status == 422, (bad, body)
        assert body["error"]["fields"][0]["field"] == field, (bad, body)
    assert len(shopify.order(DOMAIN, 10003)["refunds"]) == 1


async def test_the_api_card_names_the_lines_a_partial_refund_takes(client, db, shopify, shop):
    shop_id, key = shop
    await add_two_line_order(db, shopify, shop_id, 1001, "paid", None)
    headers = {"Authorization": f"Bearer {key}"}
    async with client.get("/api/v1/orders/1001", headers=headers) as response:
        assert response.status == 200
        live = (await response.json())["live"]
    assert (live["order"], live["payment"], live["fulfillment"]) == ("Open", "Paid", "Unfulfilled")
    kurta = next(line for line in live["line_items"] if line["title"] == "Kurta")
    assert (kurta["quantity"], kurta["refundable"]) == (2, 2)

    # A merchant on the API alone refunds a line by the id the card gave.
    status, body = await post(
        client, key, "1001/refund", {"line_items": [{"id": kurta["id"], "quantity": 1}]}
    )
    assert status == 200 and body["amount"] == "400.00", body
    async with client.get("/api/v1/orders/1001", headers=headers) as response:
        live = (await response.json())["live"]
    kurta = next(line for line in live["line_items"] if line["title"] == "Kurta")
    assert (live["payment"], live["refunded"], kurta["refundable"]) == (
        "Partially refunded",
        "400.00",
        1,
    )


async def test_the_api_card_says_when_shopify_cannot_answer(client, db, shopify, shop):
    _, key = shop
    shopify.fail_next(5)
    async with client.get(
        "/api/v1/orders/1001", headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status == 200
        card = await response.json()
    assert card["live"] is None
    assert card["order"]["financial_status"] == "paid"
