"""The order card's statuses as seed 003 names them, from the order Shopify holds now: open,
archived or cancelled; its payment; its fulfilment (in transit with the expected date, out for
delivery, delivered, ...); and each line's shipment with its tracking URL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flows.orders.reports import PAYMENT_STATUS_NAMES
from providers.shopify.admin import FulfillmentDetail, OrderDetails

# Order.displayFulfillmentStatus, lower case.
FULFILLMENT_NAMES = {
    "unfulfilled": "Unfulfilled",
    "open": "Unfulfilled",
    "partially_fulfilled": "Partially fulfilled",
    "fulfilled": "Fulfilled",
    "in_progress": "In progress",
    "on_hold": "On hold",
    "pending_fulfillment": "Pending fulfilment",
    "scheduled": "Scheduled",
    "request_declined": "Request declined",
    "restocked": "Restocked",
}
# Fulfillment.displayStatus: where one shipment is.
SHIPMENT_NAMES = {
    "SUBMITTED": "Submitted",
    "CONFIRMED": "Shipped",
    "LABEL_PURCHASED": "Label purchased",
    "LABEL_PRINTED": "Label printed",
    "LABEL_VOIDED": "Label voided",
    "CARRIER_PICKED_UP": "Picked up by the carrier",
    "IN_TRANSIT": "In transit",
    "DELAYED": "Delayed",
    "READY_FOR_PICKUP": "Ready for pickup",
    "OUT_FOR_DELIVERY": "Out for delivery",
    "ATTEMPTED_DELIVERY": "Attempted delivery",
    "FAILURE": "Delivery failed",
    "NOT_DELIVERED": "Not delivered",
    "DELIVERED": "Delivered",
    "PICKED_UP": "Picked up",
    "FULFILLED": "Fulfilled",
    "MARKED_AS_FULFILLED": "Fulfilled",
    "CANCELED": "Shipment cancelled",
}
# Shipments on their way, which say when they are expected (seed 003's "Arriving on").
ON_THE_WAY = frozenset(
    {"CONFIRMED", "LABEL_PURCHASED", "LABEL_PRINTED", "CARRIER_PICKED_UP", "IN_TRANSIT", "DELAYED"}
)
ARRIVED = frozenset({"DELIVERED", "PICKED_UP"})


@dataclass(frozen=True)
class CardLine:
    """One line of the order: `refundable` of `quantity` can still be refunded; `shipments`
    names where each shipment carrying it is, `tracking_urls` where to follow them."""

    id: str
    title: str
    quantity: int
    unit_price: str
    refundable: int
    shipments: tuple[str, ...]
    tracking_urls: tuple[str, ...]


@dataclass(frozen=True)
class LiveStatus:
    """The card's statuses and lines, as Shopify holds the order now."""

    order: str
    payment: str
    fulfillment: str
    refunded: str
    currency: str
    lines: tuple[CardLine, ...]


def live_status(details: OrderDetails, zone: str) -> LiveStatus:
    """Seed 003's names of `details`; dates are days in the shop's time zone `zone`."""
    local = ZoneInfo(zone)
    shipments = [f for f in details.fulfillments if f.status != "CANCELLED"]
    lines = []
    for item in details.line_items:
        carrying = [f for f in shipments if any(line == item.id for line, _ in f.lines)]
        lines.append(
            CardLine(
                id=item.id,
                title=item.title,
                quantity=item.quantity,
                unit_price=item.unit_price,
                refundable=item.refundable,
                shipments=tuple(shipment_name(f, local) for f in carrying),
                tracking_urls=tuple(t.url for f in carrying for t in f.tracking if t.url),
            )
        )
    payment = details.financial_status
    return LiveStatus(
        order=order_status(details),
        payment=PAYMENT_STATUS_NAMES.get(payment) or _words(payment) or "Unknown",
        fulfillment=_fulfillment(details.fulfillment_status, shipments, local),
        refunded=details.refunded,
        currency=details.currency,
        lines=tuple(lines),
    )


def order_status(details: OrderDetails) -> str:
    """Open, Archived (Shopify's closed) or Cancelled (a cancelled order is archived too)."""
    if details.cancelled_at is not None:
        return "Cancelled"
    return "Archived" if details.closed else "Open"


def shipment_name(fulfillment: FulfillmentDetail, zone: ZoneInfo) -> str:
    status = fulfillment.display_status
    name = SHIPMENT_NAMES.get(status) or _words(status) or "Fulfilled"
    if status in ON_THE_WAY and fulfillment.estimated_delivery_at is not None:
        return f"{name}, arriving on {_day(fulfillment.estimated_delivery_at, zone)}"
    if status in ARRIVED and fulfillment.delivered_at is not None:
        return f"{name} on {_day(fulfillment.delivered_at, zone)}"
    return name


def _fulfillment(status: str, shipments: list[FulfillmentDetail], zone: ZoneInfo) -> str:
    """The order's fulfilment; a fulfilled one says where its shipments are: delivered when
    all arrived, else where the latest one still on its way is."""
    name = FULFILLMENT_NAMES.get(status) or _words(status) or "Unfulfilled"
    if status != "fulfilled" or not shipments:
        return name
    waiting = [f for f in shipments if f.display_status not in ARRIVED]
    return shipment_name(waiting[-1] if waiting else shipments[-1], zone)


def _day(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.day} {local:%B %Y}"


def _words(status: str) -> str:
    return status.replace("_", " ").capitalize()
