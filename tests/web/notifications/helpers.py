"""A shop with SMS by its own Exotel account (the verification journeys' shop), prepaid orders
whose customer did or did not give SMS consent in Shopify, and fulfilment webhooks."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select

from providers.sandbox.shopify import order_payload
from storage.models import Activity, Message
from tests.web.test_shopify import DOMAIN, url

CONSENTING = "+919876500011"
NOT_CONSENTING = "+919876500022"
TRACKING_URL = "https://track.example/AWB1234"
_FULFILLMENT_IDS = itertools.count(7_000_001)

NOTIFYING: dict[str, Any] = {
    "ivr": {"timezone": "Asia/Kolkata"},
    "notifications": {
        "sms_active": True,
        "sms_sender_id": "DEMOSH",
        # Each test's orders arrive by orders/create: its message is tested on its own.
        "events": {"order_created": {"sms": {"active": False}}},
    },
}


async def paid_order(journey, phone: str = CONSENTING, consent: str = "subscribed") -> dict:
    """A prepaid order (nothing to verify) whose customer has `consent` in Shopify."""
    payload = order_payload(payment_gateway_names=["Razorpay"], financial_status="paid")
    payload["customer"]["phone"] = phone
    payload["customer"]["sms_marketing_consent"]["state"] = consent
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": phone}
    journey.fake.add_order(DOMAIN, payload)
    await webhook(journey, "orders/create", payload)
    return payload


def fulfillment(order: dict, shipment_status: str | None = None, tracking: bool = True) -> dict:
    return {
        "id": next(_FULFILLMENT_IDS),
        "order_id": order["id"],
        "status": "success",
        "shipment_status": shipment_status,
        "tracking_company": "Delhivery" if tracking else None,
        "tracking_number": "AWB1234" if tracking else None,
        "tracking_urls": [TRACKING_URL] if tracking else [],
    }


def fulfilled(order: dict, shipment: dict) -> dict:
    """The orders/fulfilled payload of `order` with its one fulfillment."""
    return {**order, "fulfillment_status": "fulfilled", "fulfillments": [shipment]}


async def webhook(journey, topic: str, payload: dict) -> None:
    endpoint = url(journey.server, "/webhooks/shopify")
    assert await journey.fake.send_webhook(endpoint, topic, DOMAIN, payload) == 200
    await journey.worker.run_until_idle()
    await journey.settle()


def texts(journey, phone: str | None = None) -> list[str]:
    """The SMS bodies the fake Exotel received (to `phone`, whatever its format there)."""
    return [s["Body"] for s in journey.exotel.sms if not phone or s["To"][-10:] == phone[-10:]]


async def timeline(journey, kind: str) -> list[dict]:
    async with journey.res.db.sessions() as session:
        rows = await session.scalars(
            select(Activity.detail).where(Activity.kind == kind).order_by(Activity.id)
        )
        return list(rows)


async def messages(journey) -> list[Message]:
    async with journey.res.db.sessions() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))
