"""Returns from Shopify end to end: returns/approve and a refund that restocks a return, as
signed webhooks into the real app and worker, SMS through the fake Exotel, on SQLite and
PostgreSQL."""

from __future__ import annotations

import itertools

from tests.web.notifications.helpers import (
    CONSENTING,
    NOT_CONSENTING,
    NOTIFYING,
    paid_order,
    texts,
    timeline,
    webhook,
)

_IDS = itertools.count(945_000_001)


def approved_return(order: dict) -> dict:
    """Shopify's returns/approve payload for the return of `order`'s first item."""
    return_id = next(_IDS)
    return {
        "id": return_id,
        "admin_graphql_api_id": f"gid://shopify/Return/{return_id}",
        "status": "open",
        "name": f"{order['name']}-R1",
        "order": {"id": order["id"], "admin_graphql_api_id": f"gid://shopify/Order/{order['id']}"},
        "total_return_line_items": 1,
        "return_line_items": [
            {
                "id": next(_IDS),
                "admin_graphql_api_id": "gid://shopify/ReturnLineItem/1",
                "fulfillment_line_item": {"line_item": {"id": order["line_items"][0]["id"]}},
                "quantity": 1,
                "return_reason": "size_too_small",
                "customer_note": "",
            }
        ],
    }


def refund(order: dict, restock_type: str, amount: str | None) -> dict:
    """Shopify's refunds/create payload: the first item back with `restock_type`, and
    `amount` refunded to the customer (None: no money)."""
    transactions = [
        {
            "id": next(_IDS),
            "order_id": order["id"],
            "kind": "refund",
            "gateway": "razorpay",
            "status": "success",
            "amount": amount,
            "currency": "INR",
        }
    ]
    return {
        "id": next(_IDS),
        "admin_graphql_api_id": "gid://shopify/Refund/1",
        "order_id": order["id"],
        "note": "",
        "restock": restock_type != "no_restock",
        "refund_line_items": [
            {
                "id": next(_IDS),
                "line_item_id": order["line_items"][0]["id"],
                "quantity": 1,
                "restock_type": restock_type,
                "location_id": 24826418,
                "subtotal": amount or "0.00",
            }
        ],
        "transactions": transactions if amount else [],
    }


async def test_an_approved_return_tells_a_consenting_customer_once(journey):
    await journey.install(NOTIFYING)
    consenting = await paid_order(journey, CONSENTING, "subscribed")
    silent = await paid_order(journey, NOT_CONSENTING, "not_subscribed")
    for order in (consenting, silent, consenting):
        await webhook(journey, "returns/approve", approved_return(order))

    assert texts(journey, NOT_CONSENTING) == []
    assert texts(journey) == [
        f"Hi Asha, the return of your Demo Store order {consenting['name']} has been created. "
        "Reply STOP to opt-out."
    ]
    (skipped,) = await timeline(journey, "notification_skipped")
    assert (skipped["event"], skipped["order"]) == ("return_created", str(silent["id"]))


async def test_a_refund_restocking_a_return_tells_both_and_a_repeat_tells_nothing(journey):
    await journey.install(NOTIFYING)
    order = await paid_order(journey)
    await webhook(journey, "returns/approve", approved_return(order))
    await webhook(journey, "refunds/create", refund(order, "return", "499.00"))
    name = order["name"]
    assert sorted(texts(journey)[1:]) == sorted(
        [
            f"Hi Asha, the return of your Demo Store order {name} has reached us. "
            "Reply STOP to opt-out.",
            f"Hi Asha, a refund of INR 499.00 for your Demo Store order {name} has been "
            "issued. Reply STOP to opt-out.",
        ]
    )
    await webhook(journey, "refunds/create", refund(order, "return", "499.00"))
    await webhook(journey, "returns/approve", approved_return(order))
    assert len(texts(journey)) == 3


async def test_a_refund_without_a_return_is_no_restock_and_a_restock_alone_no_refund(journey):
    await journey.install(NOTIFYING)
    kept = await paid_order(journey)
    await webhook(journey, "refunds/create", refund(kept, "no_restock", "120.00"))
    assert texts(journey) == [
        f"Hi Asha, a refund of INR 120.00 for your Demo Store order {kept['name']} has been "
        "issued. Reply STOP to opt-out."
    ]
    returned = await paid_order(journey)
    await webhook(journey, "refunds/create", refund(returned, "return", None))
    assert texts(journey)[1:] == [
        f"Hi Asha, the return of your Demo Store order {returned['name']} has reached us. "
        "Reply STOP to opt-out."
    ]
