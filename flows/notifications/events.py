"""Journey events: what happened to an order, read from Shopify's webhooks and from the
generic shipment webhook (carriers and fulfilment platforms), and their order.

Ranked events only move forward: one is taken when its rank is above every event the order
had, or equal to it for the other event of the rank (out for delivery and failed delivery
alternate). Unranked events (a refund) are taken once, whenever they come.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ORDER_CREATED = "order_created"
ORDER_CONFIRMED = "order_confirmed"
PACKED = "packed"
SHIPPED = "shipped"
OUT_FOR_DELIVERY = "out_for_delivery"
FAILED_DELIVERY = "failed_delivery"
DELIVERED = "delivered"
RETURN_CREATED = "return_created"
RESTOCKED = "restocked"
REFUND_ISSUED = "refund_issued"

RANKS: dict[str, int | None] = {
    ORDER_CREATED: 0,
    ORDER_CONFIRMED: 1,
    PACKED: 2,
    SHIPPED: 3,
    OUT_FOR_DELIVERY: 4,
    FAILED_DELIVERY: 4,
    DELIVERED: 5,
    RETURN_CREATED: 6,
    RESTOCKED: 7,
    REFUND_ISSUED: None,
}
EVENTS: tuple[str, ...] = tuple(RANKS)

# Shopify's fulfillment `shipment_status` values; a fulfillment without one has shipped.
_SHIPMENT_STATUS = {
    None: SHIPPED,
    "confirmed": SHIPPED,
    "label_printed": PACKED,
    "label_purchased": PACKED,
    "ready_for_pickup": SHIPPED,
    "in_transit": SHIPPED,
    "out_for_delivery": OUT_FOR_DELIVERY,
    "attempted_delivery": FAILED_DELIVERY,
    "failure": FAILED_DELIVERY,
    "delivered": DELIVERED,
}
# The statuses the shipment webhook takes, with the usual carriers' spellings.
SHIPMENT_STATUSES = {
    "packed": PACKED,
    "shipped": SHIPPED,
    "in_transit": SHIPPED,
    "out_for_delivery": OUT_FOR_DELIVERY,
    "ofd": OUT_FOR_DELIVERY,
    "delivered": DELIVERED,
    "failed_delivery": FAILED_DELIVERY,
    "ndr": FAILED_DELIVERY,
    "undelivered": FAILED_DELIVERY,
    "return_created": RETURN_CREATED,
    "rto": RETURN_CREATED,
    "restocked": RESTOCKED,
}
# A return the merchant created or approved (a request may yet be declined). It needs the
# read_returns scope: a shop connected before we asked for it tells of returns by the
# shipment webhook.
RETURN_TOPIC = "returns/approve"
NOTIFYING_TOPICS = frozenset({"orders/fulfilled", "refunds/create", RETURN_TOPIC})


@dataclass(frozen=True)
class JourneyEvent:
    """One step of an order's journey; `order` is the Shopify order id or the order's name."""

    kind: str
    order: str
    source: str  # shopify | shipments | verification
    carrier: str = ""
    awb: str = ""
    tracking_url: str = ""
    reason: str = ""
    refund_amount: str = ""

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JourneyEvent:
        return cls(**payload)


def taken(kind: str, held: set[str]) -> bool:
    """Whether `kind` moves the journey of an order that had the events `held`."""
    if kind in held:
        return False
    rank = RANKS[kind]
    if rank is None:
        return True
    ranks = [r for r in (RANKS[event] for event in held) if r is not None]
    return not ranks or rank >= max(ranks)


def _text(value: Any, limit: int = 255) -> str:
    return str(value)[:limit] if isinstance(value, str | int) and value != "" else ""


def _fulfillment_event(order: str, fulfillment: dict[str, Any], kind: str) -> JourneyEvent:
    urls = fulfillment.get("tracking_urls") or [fulfillment.get("tracking_url")]
    return JourneyEvent(
        kind,
        order,
        "shopify",
        carrier=_text(fulfillment.get("tracking_company")),
        awb=_text(fulfillment.get("tracking_number")),
        tracking_url=_text(urls[0] if isinstance(urls, list) and urls else None, 1000),
    )


def from_shopify(topic: str, payload: dict[str, Any]) -> tuple[JourneyEvent, ...]:
    """The journey events a Shopify webhook announces, in the order they happened."""
    if topic in ("fulfillments/create", "fulfillments/update"):
        if payload.get("status") not in (None, "success", "open", "pending"):
            return ()
        kind = _SHIPMENT_STATUS.get(payload.get("shipment_status"))
        order = _text(payload.get("order_id"))
        return (_fulfillment_event(order, payload, kind),) if kind and order else ()
    if topic == "orders/fulfilled":
        fulfillments = [f for f in payload.get("fulfillments") or [] if isinstance(f, dict)]
        order = _text(payload.get("id"))
        if not order:
            return ()
        latest = fulfillments[-1] if fulfillments else {}
        return (_fulfillment_event(order, latest, SHIPPED),)
    if topic == "orders/create":
        order = _text(payload.get("id"))
        return (JourneyEvent(ORDER_CREATED, order, "shopify"),) if order else ()
    if topic == RETURN_TOPIC:
        order = _return_order(payload.get("order"))
        return (JourneyEvent(RETURN_CREATED, order, "shopify"),) if order else ()
    if topic == "refunds/create":
        return _refund_events(payload)
    return ()


def _return_order(order: Any) -> str:
    """The id of a return's order: `order.id`, else the tail of its GraphQL id."""
    if not isinstance(order, dict):
        return ""
    gid = _text(order.get("admin_graphql_api_id"))
    return _text(order.get("id")) or (gid.rsplit("/", 1)[-1] if "/Order/" in gid else "")


def _refund_events(payload: dict[str, Any]) -> tuple[JourneyEvent, ...]:
    """A refund restocks the items it takes back on a return, and refunds money, or both."""
    order = _text(payload.get("order_id"))
    if not order:
        return ()
    lines = [line for line in payload.get("refund_line_items") or [] if isinstance(line, dict)]
    restocked = any(line.get("restock_type") == "return" for line in lines)
    transactions = [t for t in payload.get("transactions") or [] if isinstance(t, dict)]
    amount = sum(_amount(t.get("amount")) for t in transactions if t.get("kind") == "refund")
    currency = next((_text(t.get("currency")) for t in transactions), "")
    events = [JourneyEvent(RESTOCKED, order, "shopify")] if restocked else []
    # A refund of no money announces nothing but its restock, if any.
    if amount or not restocked:
        refund = f"{currency} {amount:,.2f}".strip() if amount else ""
        events.append(JourneyEvent(REFUND_ISSUED, order, "shopify", refund_amount=refund))
    return tuple(events)


def _amount(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def from_shipment(body: Any) -> JourneyEvent:
    """The shipment webhook's body: {"order", "status", "awb"?, "carrier"?, "reason"?,
    "tracking_url"?, "time"?}. ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    order = body.get("order")
    if not isinstance(order, str | int) or isinstance(order, bool) or not str(order).strip():
        raise ValueError("order: must be the order's name (#1001) or its Shopify id")
    status = body.get("status")
    kind = SHIPMENT_STATUSES.get(status.strip().lower()) if isinstance(status, str) else None
    if kind is None:
        raise ValueError(f"status: must be one of {', '.join(sorted(SHIPMENT_STATUSES))}")
    fields = {}
    for name, limit in (("awb", 64), ("carrier", 64), ("reason", 255), ("tracking_url", 1000)):
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > limit:
            raise ValueError(f"{name}: must be text of at most {limit} characters")
        fields[name] = value.strip()
    return JourneyEvent(kind, str(order).strip(), "shipments", **fields)
