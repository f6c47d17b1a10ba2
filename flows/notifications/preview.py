"""A notification's preview: the text an event's template gives with an order's values (or
the sample values), and for SMS its encoding, segments and credits (one per segment)."""

from __future__ import annotations

from typing import Any

from flows.notifications.events import JourneyEvent
from flows.notifications.job import find_order, token_values
from flows.notifications.templates import SAMPLE_VALUES, render
from providers.sms import measure
from storage.db import Database
from storage.models import Customer, Shop

# The event's own values (carrier, tracking, refund) come with the event: an order has none.
EVENT_TOKENS = ("carrier", "awb", "trackingurl", "reason", "refundamount")


def values_for_preview(order_values: dict[str, str] | None) -> dict[str, str]:
    if order_values is None:
        return dict(SAMPLE_VALUES)
    return order_values | {name: SAMPLE_VALUES[name] for name in EVENT_TOKENS}


def sms_preview(text: str, values: dict[str, str], encoding: str = "") -> dict[str, Any]:
    body = render(text, values)
    shape = measure(body, encoding)
    return {
        "text": body,
        "encoding": shape.encoding,
        "characters": shape.units,
        "segments": shape.segments,
        "credits": shape.segments,
    }


async def order_values(db: Database, shop: Shop, ref: str) -> dict[str, str] | None:
    """The token values of the shop's order `ref` (name or Shopify id); None if unknown."""
    async with db.sessions() as session:
        order = await find_order(session, shop.id, ref, lock=False)
        if order is None:
            return None
        customer = await session.get(Customer, order.customer_id) if order.customer_id else None
        return token_values(shop, order, customer, JourneyEvent("", ref, ""))
