"""SMS to the merchant's own number (seed 004's "Merchant: New order"): a new order and a
callback request, once per order and event, through the shop's SMS channel (the fake Exotel),
on the order's timeline and in billing; neither consent nor quiet hours hold them back."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from tests.web.notifications.helpers import (
    NOT_CONSENTING,
    NOTIFYING,
    messages,
    paid_order,
    texts,
    timeline,
    webhook,
)
from tests.web.notifications.test_api import call
from tests.web.test_verification_journeys import CUSTOMER

MERCHANT = "+919800000077"


def texting_the_merchant(**merchant) -> dict:
    notifications = NOTIFYING["notifications"] | {"merchant": {"phone": MERCHANT, **merchant}}
    return NOTIFYING | {"notifications": notifications}


async def test_a_new_order_texts_the_merchant_once(journey):
    await journey.install(texting_the_merchant())
    # The customer gave no consent: the merchant's own SMS does not depend on it.
    order = await paid_order(journey, NOT_CONSENTING, "not_subscribed")
    await webhook(journey, "orders/create", order)  # announced again: still one SMS

    assert texts(journey, NOT_CONSENTING) == []
    assert texts(journey, MERCHANT) == [
        f"Demo Store: new order {order['name']} of INR 1,499.00 (prepaid) from Asha Rao "
        f"{NOT_CONSENTING}, {order['shipping_address']['city']}."
    ]
    (sent,) = await timeline(journey, "merchant_sms")
    assert sent["event"] == "merchant_new_order" and sent["channel"] == "sms"
    (message,) = [m for m in await messages(journey) if m.to_phone == MERCHANT]
    assert (message.order_id is not None, message.customer_id) == (True, None)
    assert message.from_phone == "DEMOSH" and message.status == "sent"
    status, bill = await call(journey, "GET", "billing")
    assert status == 200
    (line,) = [line for line in bill["lines"] if line["event"] == "merchant_new_order"]
    assert (line["provider"], line["account"], line["messages"]) == ("exotel", "shop", 1)


async def test_a_callback_request_texts_the_merchant_even_in_quiet_hours(journey):
    now = journey.res.clock.now().astimezone(ZoneInfo("Asia/Kolkata"))
    quiet = {"active": True, "start_hour": now.hour, "end_hour": (now.hour + 3) % 24}
    changes = texting_the_merchant(new_order={"active": False})
    changes["notifications"] = changes["notifications"] | {"quiet_hours": quiet}
    await journey.install(changes)
    order = await journey.order(CUSTOMER)
    assert texts(journey, MERCHANT) == []  # new order texts switched off

    await journey.press("3")  # the customer asks for a call back
    await journey.settle()
    (body,) = texts(journey, MERCHANT)
    assert body == (
        f"Demo Store: Asha Rao asked for a call back about order {order['name']}. Call {CUSTOMER}."
    )
    await journey.press("3")  # asked again: the merchant is texted once per order
    await journey.settle()
    assert len(texts(journey, MERCHANT)) == 1
    assert [d["event"] for d in await timeline(journey, "merchant_sms")] == [
        "merchant_callback_requested"
    ]


async def test_no_merchant_sms_without_the_number_or_before_sms_is_active(journey):
    await journey.install({**NOTIFYING, "notifications": {"sms_active": False}})
    await paid_order(journey)
    document = await journey.api("GET", "settings")
    assert document["notifications"]["merchant"]["phone"] == ""
    assert document["notifications"]["merchant"]["new_order"]["active"] is True
    document["notifications"]["sms_active"] = True
    await journey.api("PUT", "settings", document)  # active, but no number
    await paid_order(journey)
    assert texts(journey, MERCHANT) == []

    document["notifications"]["merchant"]["phone"] = MERCHANT
    await journey.api("PUT", "settings", document)
    journey.res.clock.advance(timedelta(seconds=1))
    await paid_order(journey)
    assert len(texts(journey, MERCHANT)) == 1


async def test_a_merchant_template_with_an_unknown_token_is_refused(journey):
    await journey.install(NOTIFYING)
    document = await journey.api("GET", "settings")
    merchant = document["notifications"]["merchant"]
    merchant["new_order"]["text"] = "New order %ordername% by %customeremail%"
    merchant["phone"] = "98000"
    status, answer = await call(journey, "PUT", "shop/settings", document)
    assert status == 422
    fields = {f["field"] for f in answer["error"]["fields"]}
    assert fields == {"notifications.merchant.new_order.text", "notifications.merchant.phone"}
