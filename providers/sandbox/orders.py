"""The demo shop's orders and fulfilments as Shopify's webhooks carry them (REST shape)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from providers.sandbox.shopify import order_payload

IST = timezone(timedelta(hours=5, minutes=30))
COD_GATEWAY = "Cash on Delivery (COD)"
PREPAID_GATEWAY = "razorpay"
CARRIER = "Delhivery"


def shop_time(moment: datetime) -> str:
    """A moment as Shopify writes it for an Indian shop (seconds, +05:30)."""
    return moment.astimezone(IST).isoformat(timespec="seconds")


def new_order(
    *,
    order_id: int,
    number: int,
    now: datetime,
    phone: str,
    amount: Decimal,
    payment: str,
    customer_name: str,
    customer_id: int,
) -> dict[str, Any]:
    """An orders/create payload: one line item worth `amount`, free shipping, COD or paid."""
    price = f"{amount:.2f}"
    first, _, last = customer_name.strip().partition(" ")
    stamp = shop_time(now)
    payload = order_payload(
        id=order_id,
        order_number=number,
        name=f"#{number}",
        number=number - 1000,
        created_at=stamp,
        processed_at=stamp,
        updated_at=stamp,
        total_price=price,
        current_total_price=price,
        subtotal_price=price,
        current_subtotal_price=price,
        total_line_items_price=price,
        total_shipping_price_set=_money_set("0.00"),
        shipping_lines=[
            {"code": "Free", "price": "0.00", "title": "Free shipping", "source": "shopify"}
        ],
        payment_gateway_names=[COD_GATEWAY if payment == "cod" else PREPAID_GATEWAY],
        financial_status="pending" if payment == "cod" else "paid",
    )
    item = payload["line_items"][0]
    title = "Cotton Kurta"
    payload["line_items"] = [
        item | {"title": title, "name": title, "price": price, "price_set": _money_set(price)}
    ]
    names = {"first_name": first, "last_name": last, "name": customer_name.strip()}
    for key in ("shipping_address", "billing_address"):
        payload[key] = payload[key] | names | {"phone": phone}
    customer = payload["customer"]
    payload["customer"] = customer | {
        "id": customer_id,
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        "first_name": first,
        "last_name": last,
        "phone": phone,
        "email": f"customer{customer_id % 100_000}@example.com",
        "default_address": customer["default_address"] | names | {"phone": phone},
    }
    payload["email"] = payload["contact_email"] = payload["customer"]["email"]
    return payload


def sample_shipment(order_id: int) -> dict[str, str]:
    """Plausible tracking details for an order's shipment: the carrier, its AWB and page."""
    tracking = f"DL{order_id % 10**10:010d}"
    return {
        "carrier": CARRIER,
        "tracking_number": tracking,
        "tracking_url": f"https://www.delhivery.com/track/package/{tracking}",
    }


def new_fulfillment(
    order: dict[str, Any],
    fulfillment_id: int,
    now: datetime,
    shipment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A fulfillments/create payload: every line shipped by the carrier (`shipment`: carrier,
    tracking_number, tracking_url; the sample's by default), in transit."""
    stamp = shop_time(now)
    details = shipment or sample_shipment(int(order["id"]))
    tracking, url = details["tracking_number"], details["tracking_url"]
    return {
        "id": fulfillment_id,
        "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fulfillment_id}",
        "order_id": order["id"],
        "name": f"{order['name']}.1",
        "status": "success",
        "shipment_status": None,
        "created_at": stamp,
        "updated_at": stamp,
        "service": "manual",
        "tracking_company": details["carrier"] or None,
        "tracking_number": tracking or None,
        "tracking_numbers": [tracking] if tracking else [],
        "tracking_url": url or None,
        "tracking_urls": [url] if url else [],
        "line_items": order.get("line_items", []),
    }


def is_cod(order: dict[str, Any]) -> bool:
    return COD_GATEWAY in (order.get("payment_gateway_names") or [])


def _money_set(amount: str) -> dict[str, Any]:
    money = {"amount": amount, "currency_code": "INR"}
    return {"shop_money": money, "presentment_money": dict(money)}
