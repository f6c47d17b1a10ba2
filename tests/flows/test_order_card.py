"""The order card's live statuses as a table: Shopify's order and shipments in, seed 003's
names out (cancelled before archived, the latest shipment still on its way, dates in the
shop's time zone, cancelled shipments left out)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.orders.card import live_status
from providers.shopify.admin import FulfillmentDetail, LineItemDetail, OrderDetails, Tracking

KURTA, DUPATTA = "gid://shopify/LineItem/1", "gid://shopify/LineItem/2"
EVENING = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)  # 16 January in Asia/Kolkata


def shipment(status: str, *lines: str, **fields) -> FulfillmentDetail:
    return FulfillmentDetail(
        status=fields.pop("state", "SUCCESS"),
        display_status=status,
        estimated_delivery_at=fields.pop("eta", None),
        in_transit_at=None,
        delivered_at=fields.pop("delivered", None),
        tracking=(Tracking("Delhivery", status, f"https://t.example/{status}"),),
        lines=tuple((line, 1) for line in lines),
    )


def details(
    fulfillment: str = "fulfilled", *shipments: FulfillmentDetail, **fields
) -> OrderDetails:
    return OrderDetails(
        name="#1001",
        closed=fields.get("closed", False),
        closed_at=None,
        cancelled_at=fields.get("cancelled_at"),
        financial_status=fields.get("financial", "paid"),
        fulfillment_status=fulfillment,
        total="699.00",
        refunded="0.00",
        currency="INR",
        line_items=(
            LineItemDetail(KURTA, "Kurta", 1, 1, "400.00"),
            LineItemDetail(DUPATTA, "Dupatta", 1, 1, "299.00"),
        ),
        fulfillments=shipments,
    )


@pytest.mark.parametrize(
    ("order", "statuses"),
    [
        (details("unfulfilled"), ("Open", "Paid", "Unfulfilled")),
        (details("unfulfilled", closed=True), ("Archived", "Paid", "Unfulfilled")),
        (
            details("unfulfilled", closed=True, cancelled_at=EVENING, financial="voided"),
            ("Cancelled", "Voided", "Unfulfilled"),
        ),
        (
            details("fulfilled", financial="partially_refunded"),
            ("Open", "Partially refunded", "Fulfilled"),
        ),
        (details("fulfilled", financial="expired"), ("Open", "Expired", "Fulfilled")),
        (details("on_hold", financial="some_new_state"), ("Open", "Some new state", "On hold")),
        (
            details("fulfilled", shipment("IN_TRANSIT", KURTA, DUPATTA, eta=EVENING)),
            ("Open", "Paid", "In transit, arriving on 16 January 2026"),
        ),
        (
            details(
                "fulfilled",
                shipment("DELIVERED", KURTA, delivered=EVENING),
                shipment("OUT_FOR_DELIVERY", DUPATTA),
            ),
            ("Open", "Paid", "Out for delivery"),
        ),
        (
            details(
                "fulfilled",
                shipment("IN_TRANSIT", KURTA),
                shipment("DELIVERED", DUPATTA, delivered=EVENING),
            ),
            ("Open", "Paid", "In transit"),
        ),
        (
            details("fulfilled", shipment("DELIVERED", KURTA, DUPATTA, delivered=EVENING)),
            ("Open", "Paid", "Delivered on 16 January 2026"),
        ),
        (
            details("partially_fulfilled", shipment("READY_FOR_PICKUP", KURTA)),
            ("Open", "Paid", "Partially fulfilled"),
        ),
        (
            details(
                "fulfilled",
                shipment("ATTEMPTED_DELIVERY", KURTA, DUPATTA),
                shipment("IN_TRANSIT", KURTA, state="CANCELLED"),
            ),
            ("Open", "Paid", "Attempted delivery"),
        ),
    ],
)
def test_statuses(order, statuses):
    status = live_status(order, "Asia/Kolkata")
    assert (status.order, status.payment, status.fulfillment) == statuses


def test_each_line_has_its_shipments_and_tracking_urls():
    order = details(
        "partially_fulfilled",
        shipment("IN_TRANSIT", KURTA, eta=EVENING),
        shipment("IN_TRANSIT", KURTA, state="CANCELLED"),
    )
    kurta, dupatta = live_status(order, "UTC").lines
    assert kurta.shipments == ("In transit, arriving on 15 January 2026",)
    assert kurta.tracking_urls == ("https://t.example/IN_TRANSIT",)
    assert (dupatta.shipments, dupatta.tracking_urls) == ((), ())
