"""Order-journey notifications end to end: signed Shopify webhooks and the shipment webhook
into the real app and worker, SMS through the fake Exotel, on SQLite and PostgreSQL."""

from __future__ import annotations

from flows.notifications.shipments import shipments_url
from providers.sandbox.shopify import order_payload
from tests.web.notifications.helpers import (
    CONSENTING,
    NOT_CONSENTING,
    NOTIFYING,
    TRACKING_URL,
    fulfilled,
    fulfillment,
    messages,
    paid_order,
    texts,
    timeline,
    webhook,
)


async def shipment(journey, body: dict, token_url: str | None = None) -> tuple[int, dict]:
    target = token_url or shipments_url(
        journey.res.settings.server.public_url,
        journey.res.settings.secret_key(),
        journey.shop_id,
    )
    async with journey.browser.post(target, json=body) as response:
        answer = (response.status, await response.json())
    await journey.worker.run_until_idle()
    await journey.settle()
    return answer


async def test_a_fulfilled_order_with_tracking_sends_one_sms_only_to_a_consenting_customer(
    journey,
):
    await journey.install(NOTIFYING)
    consenting = await paid_order(journey, CONSENTING, "subscribed")
    silent = await paid_order(journey, NOT_CONSENTING, "not_subscribed")
    for order in (consenting, silent):
        shipped = fulfillment(order)
        # One fulfilment announced twice: fulfillments/create, then orders/fulfilled.
        await webhook(journey, "fulfillments/create", shipped)
        await webhook(journey, "orders/fulfilled", fulfilled(order, shipped))

    assert texts(journey, NOT_CONSENTING) == []
    (body,) = texts(journey)
    assert body == (
        f"Hi Asha Rao, your Demo Store order {consenting['name']} has been fulfilled by "
        f"Delhivery. Track it at {TRACKING_URL}. Reply STOP to opt-out."
    )
    assert journey.exotel.sms[0]["From"] == "DEMOSH"
    (skipped,) = await timeline(journey, "notification_skipped")
    assert skipped["channel"] == "sms" and skipped["order"] == str(silent["id"])
    assert skipped["reason"] == "the customer has not consented to SMS"
    sent = [m for m in await messages(journey) if m.status == "sent"]
    assert [(m.idempotency_key.split(":")[2], m.account, m.credits) for m in sent] == [
        ("shipped", "shop", 1)
    ]


async def test_without_a_tracking_url_the_text_leaves_out_the_tracking_part(journey):
    await journey.install(NOTIFYING)
    order = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(order, tracking=False))
    (body,) = texts(journey)
    assert "Track it" not in body and " by " not in body
    assert body.endswith(f"order {order['name']} has been fulfilled. Reply STOP to opt-out.")


async def test_a_shipment_webhook_with_a_wrong_token_is_refused_and_sends_nothing(journey):
    await journey.install(NOTIFYING)
    order = await paid_order(journey)
    good = shipments_url(
        journey.res.settings.server.public_url, journey.res.settings.secret_key(), journey.shop_id
    )
    forged = good[: good.rindex(".") + 1] + "A" * 24
    event = {"order": order["name"], "status": "out_for_delivery", "awb": "AWB1"}
    status, answer = await shipment(journey, event, forged)
    assert status == 404 and answer["error"]["code"] == "not_found"
    other_shop = good.replace(f"/{journey.shop_id}.", f"/{journey.shop_id + 1}.")
    assert (await shipment(journey, event, other_shop))[0] == 404
    assert texts(journey) == [] and await timeline(journey, "notification_event") == []

    status, answer = await shipment(journey, {"order": order["name"], "status": "lost"})
    assert status == 400 and answer["error"]["fields"][0]["field"] == "status"
    status, answer = await shipment(journey, event)
    assert (status, answer) == (202, {"accepted": True, "event": "out_for_delivery"})
    (body,) = texts(journey)
    assert "is out for delivery today" in body


async def test_out_of_order_statuses_send_nothing_backwards(journey):
    await journey.install(NOTIFYING)
    order = await paid_order(journey)
    ref = str(order["id"])
    assert (await shipment(journey, {"order": ref, "status": "delivered"}))[0] == 202
    assert (await shipment(journey, {"order": ref, "status": "shipped"}))[0] == 202
    await webhook(journey, "fulfillments/create", fulfillment(order, "out_for_delivery"))
    (body,) = texts(journey)
    assert "has been delivered" in body
    stale = await timeline(journey, "notification_stale")
    assert [detail["event"] for detail in stale] == ["shipped", "out_for_delivery"]
    # A failed delivery and a new attempt alternate at the same step of the journey.
    second = await paid_order(journey)
    for status in ("shipped", "out_for_delivery", "ndr", "shipped"):
        await shipment(
            journey, {"order": second["name"], "status": status, "reason": "door locked"}
        )
    later = texts(journey)[1:]
    assert len(later) == 3
    assert "fulfilled" in later[0] and "out for delivery" in later[1]
    assert "could not deliver" in later[2] and "(door locked)" in later[2]


async def test_sms_sends_nothing_until_activated_then_each_template_until_deactivated(journey):
    await journey.install({"ivr": {"timezone": "Asia/Kolkata"}})
    first = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(first))
    assert texts(journey) == []
    document = await journey.api("GET", "settings")
    assert document["notifications"]["sms_active"] is False
    assert document["notifications"]["events"]["shipped"]["sms"]["active"] is True

    # Activated: every standard template goes, the new order's one included.
    document["notifications"] |= {"sms_active": True, "sms_sender_id": "DEMOSH"}
    await journey.api("PUT", "settings", document)
    second = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(second))
    await shipment(journey, {"order": second["name"], "status": "delivered"})
    assert [_step(text) for text in texts(journey)] == ["received", "fulfilled", "delivered"]

    events = document["notifications"]["events"]
    events["order_created"]["sms"]["active"] = events["delivered"]["sms"]["active"] = False
    await journey.api("PUT", "settings", document)
    third = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(third))
    await shipment(journey, {"order": third["name"], "status": "delivered"})
    assert [_step(text) for text in texts(journey)[3:]] == ["fulfilled"]

    events["delivered"]["sms"]["active"] = True
    await journey.api("PUT", "settings", document)
    fourth = await paid_order(journey)
    await shipment(journey, {"order": fourth["name"], "status": "delivered"})
    assert [_step(text) for text in texts(journey)[4:]] == ["delivered"]
    assert all(text.startswith("Hi Asha") for text in texts(journey))


def _step(text: str) -> str:
    return text.split(" has been ")[1].split(" ")[0].rstrip(".")


async def test_quiet_hours_hold_notifications_but_not_urgent_ones(journey):
    # The test clock starts at 14:30 in Kolkata.
    quiet = {"active": True, "start_hour": 14, "end_hour": 16}
    await journey.install(
        NOTIFYING | {"notifications": NOTIFYING["notifications"] | {"quiet_hours": quiet}}
    )
    waiting = await paid_order(journey)
    urgent = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(waiting))
    await shipment(journey, {"order": urgent["name"], "status": "out_for_delivery"})
    (body,) = texts(journey)
    assert "out for delivery" in body
    await journey.advance(89)
    assert len(texts(journey)) == 1
    await journey.advance(1)  # 16:00 in Kolkata
    await journey.settle()
    assert len(texts(journey)) == 2 and "fulfilled" in texts(journey)[-1]


async def test_an_unknown_token_is_refused_with_its_field_path(journey, browser, server):
    await journey.install(NOTIFYING)
    document = await journey.api("GET", "settings")
    document["notifications"]["events"]["shipped"]["sms"]["text"] = "Hi %name%, it shipped"
    async with journey.browser.put(
        str(journey.server.make_url("/api/v1/shop/settings")),
        json=document,
        headers=journey.headers,
    ) as response:
        assert response.status == 422
        answer = await response.json()
    (problem,) = answer["error"]["fields"]
    assert problem["field"] == "notifications.events.shipped.sms.text"
    assert problem["message"].startswith("unknown token %name%")


async def test_an_order_confirmed_by_its_verification_call_is_confirmed_to_the_customer(journey):
    await journey.install(NOTIFYING)
    order = await journey.order(
        CONSENTING,
        customer={
            **order_payload()["customer"],
            "phone": CONSENTING,
            "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        },
    )
    await journey.press("1")
    await journey.settle()
    assert texts(journey, CONSENTING) == [
        f"Hi Asha Rao, your Demo Store order {order['name']} has been confirmed. You can view "
        f"your order details at {order['order_status_url']}. Reply STOP to opt-out."
    ]
    # The same confirmation announced again (a second verification outcome) sends nothing.
    await journey.press("1")
    await journey.settle()
    assert len(texts(journey, CONSENTING)) == 1
