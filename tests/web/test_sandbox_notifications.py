"""Order-journey notifications in the sandbox, driven as its page drives them: the merchant turns
SMS (and WhatsApp) notifications on through the admin API, marks an order packed, shipped, out
for delivery, delivered or failed in the simulated shop, whose Shopify (or carrier) tells our
app, and the customer's phone gets the SMS or the WhatsApp template with its buttons, or the
notification is skipped with its reason (SQLite, as the sandbox)."""

from __future__ import annotations

from typing import Any

from providers.sandbox.shop import DEMO_TEMPLATES, STORE_URL
from tests.web import test_sandbox_api
from tests.web.test_sandbox_api import CUSTOMER, Driver, order_of, phone_of

# The sandbox (its world, app and worker) as the sandbox API tests run it.
database_url = test_sandbox_api.database_url
sandbox = test_sandbox_api.sandbox

NOT_CONSENTED = "the customer has not consented to SMS"


async def sms_active(sandbox: Driver) -> None:
    """Tick SMS notifications active, as PUT /api/v1/shop/settings does for any merchant."""
    status, document = await sandbox.admin("GET", "shop/settings")
    assert status == 200, document
    document["notifications"]["sms_active"] = True
    status, saved = await sandbox.admin("PUT", "shop/settings", document)
    assert status == 200, saved


async def consenting_order(sandbox: Driver) -> dict[str, Any]:
    """A prepaid order (nothing to verify) whose customer then subscribes to SMS in Shopify,
    once the order's own notification (with SMS active) was decided: notification jobs take
    turns with the webhook intake, so it could otherwise come after the consent."""
    order = await sandbox.order(CUSTOMER, payment="prepaid")
    status, document = await sandbox.admin("GET", "shop/settings")
    assert status == 200, document
    if document["notifications"]["sms_active"]:
        await sandbox.until(
            lambda s: lines(s, order, "skipped") or lines(s, order, "waiting"),
            "the order's own notification decided",
        )
    status, customer = await sandbox.post(
        f"/sandbox/api/customers/{CUSTOMER}/sms-consent", {"subscribed": True}
    )
    assert status == 200, customer
    await sandbox.until(
        lambda s: phone_of(s, CUSTOMER)["consent"].get("sms") == "opted_in",
        "our app to record the SMS consent",
    )
    return order


async def mark(sandbox: Driver, order: dict[str, Any], action: str, body: Any = None) -> Any:
    status, answer = await sandbox.post(f"/sandbox/api/orders/{order['id']}/{action}", body)
    assert status == 200, answer
    return answer["order"]


def received(state: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    return [m for m in phone_of(state, CUSTOMER)["threads"][channel] if m["direction"] == "out"]


def lines(state: dict[str, Any], order: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    notifications = order_of(state, order["id"])["notifications"]
    return [line for line in notifications if line["kind"] == kind]


async def sms_containing(sandbox: Driver, text: str) -> list[dict[str, Any]]:
    return await sandbox.until(
        lambda s: [m for m in received(s, "sms") if text in m["body"]], f"an SMS with {text!r}"
    )


async def test_marking_an_order_shipped_sends_one_sms_with_the_tracking_url(sandbox: Driver):
    await sms_active(sandbox)
    order = await consenting_order(sandbox)
    shipment = {
        "carrier": "Blue Dart",
        "tracking_number": "BD7788990011",
        "tracking_url": "https://bluedart.example/track/BD7788990011",
    }
    shipped = await mark(sandbox, order, "fulfil", shipment)
    assert shipped["fulfillment_status"] == "fulfilled"
    assert [(m["status"], m["reported_by"]) for m in shipped["journey"]] == [
        ("shipped", "shopify")
    ]
    (sms,) = await sms_containing(sandbox, shipment["tracking_url"])
    assert "fulfilled by Blue Dart" in sms["body"] and order["name"] in sms["body"]

    # The next marking's SMS comes after the shipped webhooks' jobs: still one shipped SMS,
    # though fulfillments/create and orders/fulfilled both announced it.
    await mark(sandbox, order, "out-for-delivery")
    await sms_containing(sandbox, "out for delivery")
    state = await sandbox.state()
    assert len([m for m in received(state, "sms") if "fulfilled" in m["body"]]) == 1
    sent = [(line["event"], line["channel"]) for line in lines(state, order, "message")]
    assert sent == [("shipped", "sms"), ("out_for_delivery", "sms")]
    # The order came before the customer's consent: its notification was skipped, and says why.
    (skipped,) = lines(state, order, "skipped")
    assert (skipped["event"], skipped["channel"]) == ("order_created", "sms")
    assert skipped["reason"] == NOT_CONSENTED


async def test_a_customer_who_did_not_consent_is_skipped_with_the_reason(sandbox: Driver):
    await sms_active(sandbox)
    order = await sandbox.order(CUSTOMER, payment="prepaid")
    await mark(sandbox, order, "fulfil")
    state = await sandbox.until(
        lambda s: any(line["event"] == "shipped" for line in lines(s, order, "skipped")) and s,
        "the shipped notification skipped",
    )
    assert [(line["event"], line["reason"]) for line in lines(state, order, "skipped")] == [
        ("order_created", NOT_CONSENTED),
        ("shipped", NOT_CONSENTED),
    ]
    # The phone shows what was not sent to it, and why; it received nothing.
    not_sent = phone_of(state, CUSTOMER)["suppressed"]
    assert [(m["channel"], m["body"], m["reason"]) for m in not_sent] == [
        ("sms", f"The order created notification of order {order['name']}", NOT_CONSENTED),
        ("sms", f"The shipped notification of order {order['name']}", NOT_CONSENTED),
    ]
    assert received(state, "sms") == []


async def test_nothing_is_sent_until_sms_is_active(sandbox: Driver):
    order = await consenting_order(sandbox)
    await mark(sandbox, order, "fulfil")
    # Our app took in the shipment (orders/updated, the last of its webhooks, included).
    await sandbox.until(
        lambda card: (
            card.get("order", {}).get("fulfillment_status") == "fulfilled"
            and "fulfillment" in [item["kind"] for item in card["timeline"]]
        ),
        "our app to record the shipment",
        fetch=lambda: sandbox.card(order["name"]),
    )
    await sms_active(sandbox)
    await mark(sandbox, order, "out-for-delivery")
    await sms_containing(sandbox, "out for delivery")
    state = await sandbox.state()
    assert [line["event"] for line in lines(state, order, "message")] == ["out_for_delivery"]
    assert len(received(state, "sms")) == 1


async def test_a_marking_behind_the_journey_sends_nothing(sandbox: Driver):
    await sms_active(sandbox)
    order = await consenting_order(sandbox)
    status, refused = await sandbox.post(f"/sandbox/api/orders/{order['id']}/deliver")
    assert status == 409 and "not shipped" in refused["error"]["message"]

    await mark(sandbox, order, "fulfil")
    await mark(sandbox, order, "deliver")
    await sms_containing(sandbox, "has been delivered")
    # Late news: the warehouse's "packed" (the carrier's shipment webhook) and Shopify's
    # "out for delivery" arrive after the delivery.
    packed = await mark(sandbox, order, "pack")
    assert packed["journey"][-1] == {
        "status": "packed",
        "reported_by": "carrier",
        "at": packed["journey"][-1]["at"],
    }
    await mark(sandbox, order, "out-for-delivery")
    state = await sandbox.until(
        lambda s: len(lines(s, order, "stale")) == 2 and s, "both late markings found stale"
    )
    assert sorted(line["event"] for line in lines(state, order, "stale")) == [
        "out_for_delivery",
        "packed",
    ]
    assert [line["event"] for line in lines(state, order, "message")] == ["shipped", "delivered"]
    assert len(received(state, "sms")) == 2
    status, refused = await sandbox.post(f"/sandbox/api/orders/{order['id']}/out-for-delivery")
    assert status == 409 and "already" in refused["error"]["message"]


async def test_a_failed_delivery_carries_the_carriers_reason(sandbox: Driver):
    await sms_active(sandbox)
    order = await consenting_order(sandbox)
    await mark(sandbox, order, "fulfil")
    failed = await mark(sandbox, order, "fail", {"reason": "Customer not available"})
    assert failed["journey"][-1]["reported_by"] == "carrier"
    (sms,) = await sms_containing(sandbox, "could not deliver")
    assert "(Customer not available)" in sms["body"]
    # Without a reason, Shopify's fulfillments/update reports the next failed attempt.
    await mark(sandbox, order, "out-for-delivery")
    again = await mark(sandbox, order, "fail")
    assert again["journey"][-1]["reported_by"] == "shopify"


async def test_bad_markings_are_refused_naming_the_field(sandbox: Driver):
    order = await sandbox.order(CUSTOMER, payment="prepaid")
    path = f"/sandbox/api/orders/{order['id']}"
    status, problem = await sandbox.post(
        f"{path}/fulfil", {"carrier": "", "tracking_number": "X1", "tracking_url": "ftp://x"}
    )
    assert status == 422
    assert {f["field"] for f in problem["error"]["fields"]} == {"carrier", "tracking_url"}
    status, problem = await sandbox.post(f"{path}/fail", {"reason": "x" * 256})
    assert status == 422 and problem["error"]["fields"][0]["field"] == "reason"
    assert (await sandbox.state())["orders"][0]["journey"] == []


async def test_whatsapp_notifications_show_the_template_with_its_buttons(sandbox: Driver):
    state = await sandbox.state()
    templates = {t["event"]: t for t in state["notification_templates"]}
    assert set(templates) == {t.event for t in DEMO_TEMPLATES}
    shipped = templates["shipped"]
    body = {"active": True, "template_id": shipped["template_id"], "params": shipped["params"]}
    # The demo's WhatsApp is the platform's Gupshup: its per-message charge is asked first.
    status, refused = await sandbox.admin("PUT", "notifications/whatsapp/shipped", body)
    assert status == 409 and refused["error"]["code"] == "charge_not_accepted"
    status, enabled = await sandbox.admin(
        "PUT", "notifications/whatsapp/shipped", body | {"accept_charge": True}
    )
    assert status == 200 and enabled["template"]["status"] == "APPROVED", enabled

    order = await sandbox.order(CUSTOMER, payment="prepaid")
    # The customer ticked WhatsApp updates at checkout: the admin API records it.
    opt_in = {"channel": "whatsapp", "state": "opted_in", "source": "checkout"}
    status, consent = await sandbox.admin("PUT", f"customers/{CUSTOMER}/consent", opt_in)
    assert status == 200, consent
    await mark(sandbox, order, "fulfil")
    (message,) = await sandbox.until(
        lambda s: [m for m in received(s, "whatsapp") if m["template"]], "the WhatsApp template"
    )
    tracking = order_of(state := await sandbox.state(), order["id"])["shipment_sample"]
    assert message["body"] == (
        f"Hi Asha, your Demo Store order {order['name']} has shipped with "
        f"{tracking['carrier']} (AWB {tracking['tracking_number']}). "
        f"Track it at {tracking['tracking_url']}"
    )
    assert message["buttons"] == [{"title": "Talk to us"}]
    assert message["links"] == [{"title": "Visit the store", "url": STORE_URL}]
    # SMS is not active: the SMS channel sends nothing and records nothing.
    assert [line["channel"] for line in lines(state, order, "message")] == ["whatsapp"]

    status, pressed = await sandbox.post(
        f"/sandbox/api/phones/{CUSTOMER}/button", {"title": "Talk to us"}
    )
    assert status == 200 and pressed["message"]["direction"] == "in"


async def test_a_notification_in_quiet_hours_waits_for_their_end(sandbox: Driver):
    status, document = await sandbox.admin("GET", "shop/settings")
    document["notifications"] |= {
        "sms_active": True,
        # The sandbox's morning (10:00 India time) is inside them.
        "quiet_hours": {"active": True, "start_hour": 9, "end_hour": 11},
    }
    status, saved = await sandbox.admin("PUT", "shop/settings", document)
    assert status == 200, saved
    order = await consenting_order(sandbox)
    await mark(sandbox, order, "fulfil")
    state = await sandbox.until(
        lambda s: len(lines(s, order, "waiting")) == 2 and s, "both notifications waiting"
    )
    waiting = lines(state, order, "waiting")
    assert sorted((line["event"], line["reason"]) for line in waiting) == [
        ("order_created", "quiet hours"),
        ("shipped", "quiet hours"),
    ]
    assert all(line["at"][11:19] == "05:30:00" for line in waiting)  # 11:00 in India
    assert received(state, "sms") == []

    # 409 "busy" while the jobs the marking queued are still running: try again.
    await sandbox.until(
        lambda moved: moved[0] == 200,
        "the clock moved to the end of the quiet hours",
        fetch=lambda: sandbox.post("/sandbox/api/time", {"to": "next_job"}),
    )
    await sms_containing(sandbox, "has been fulfilled")
    assert lines(await sandbox.state(), order, "waiting") == []
