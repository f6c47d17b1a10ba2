"""WhatsApp notifications (seed 002) through the real app and the fake Gupshup: a template
enabled only when Gupshup has it APPROVED, the platform's account only once its per-message
charge is accepted, sends to customers opted in on WhatsApp, a paused template falling back
to SMS with an alert, as does a template refused for the customer's closed 24-hour window
(Meta's 131047 in Gupshup's message-event), and billing per account."""

from __future__ import annotations

from flows.conversations import consent
from tests.web.notifications.helpers import (
    CONSENTING,
    NOTIFYING,
    fulfillment,
    paid_order,
    texts,
    timeline,
    webhook,
)
from tests.web.notifications.test_api import call
from tests.web.test_verification_journeys import Journey

TEXT = "Hi {{1}}, your order {{2}} is on its way: {{3}}"
PARAMS = ["firstname", "ordername", "trackingurl"]


async def own_gupshup(journey: Journey, gupshup) -> None:
    """The shop's own Gupshup app, chosen for WhatsApp."""
    body = {
        "provider": "gupshup",
        "api_key": gupshup.api_key,
        "app_name": gupshup.app_name,
        "whatsapp_number": "+" + gupshup.source,
    }
    status, connected = await call(journey, "POST", "shop/accounts", body)
    assert status == 201, connected
    status, _ = await call(journey, "PUT", "shop/channels", {"whatsapp": connected["id"]})
    assert status == 200


async def enable(journey: Journey, template_id: str, **extra) -> tuple[int, dict]:
    body = {"active": True, "template_id": template_id, "params": PARAMS, **extra}
    return await call(journey, "PUT", "notifications/whatsapp/shipped", body)


async def opted_in_on_whatsapp(journey: Journey, phone: str = CONSENTING) -> None:
    """As a first inbound WhatsApp message records it."""
    async with journey.res.db.transaction() as session:
        await consent.record(
            session,
            journey.res.clock.now(),
            shop_id=journey.shop_id,
            phone=phone,
            channel="whatsapp",
            state=consent.OPTED_IN,
            source="inbound",
        )


async def test_a_template_that_is_not_approved_is_refused_with_the_providers_status(
    journey, gupshup
):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)
    gupshup.add_template("tpl-pending", "order_shipped_v2", "PENDING", TEXT)
    gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)

    status, answer = await enable(journey, "tpl-pending")
    assert status == 409 and answer["error"]["code"] == "template_not_usable"
    assert answer["error"]["provider_status"] == "PENDING"
    assert answer["error"]["fields"][0]["field"] == "template_id"
    status, answer = await enable(journey, "tpl-missing")
    assert status == 409 and answer["error"]["fields"][0]["field"] == "template_id"
    status, answer = await enable(journey, "tpl-ok", params=["firstname"])
    assert status == 409 and answer["error"]["fields"][0]["field"] == "params"
    status, answer = await call(
        journey, "PUT", "notifications/whatsapp/shipped", {"active": True, "template_id": " "}
    )
    assert status == 422 and answer["error"]["fields"][0]["field"] == "template_id"
    settings = await journey.api("GET", "settings")
    assert settings["notifications"]["events"]["shipped"]["whatsapp"]["active"] is False

    status, answer = await enable(journey, "tpl-ok")
    assert status == 200, answer
    assert answer["template"]["preview"] == (
        "Hi Asha, your order #1001 is on its way: https://track.example/1234567890"
    )
    settings = await journey.api("GET", "settings")
    assert settings["notifications"]["events"]["shipped"]["whatsapp"] == {
        "active": True,
        "template_id": "tpl-ok",
        "params": PARAMS,
        "fallback_to_sms": True,
    }


async def test_the_platforms_account_sends_only_once_its_charge_is_accepted(journey, gupshup):
    await journey.install(NOTIFYING)
    gupshup.add_template("tpl-platform", "order_shipped", "APPROVED", TEXT)
    status, answer = await enable(journey, "tpl-platform")
    assert status == 409 and answer["error"]["code"] == "charge_not_accepted"
    assert answer["error"]["fields"][0]["field"] == "accept_charge"
    status, answer = await enable(journey, "tpl-platform", accept_charge=True)
    assert status == 200 and answer["charge_accepted"] is True

    await opted_in_on_whatsapp(journey)
    order = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(order))
    (sent,) = [m for m in gupshup.messages if "template" in m]
    assert sent["template"] == {
        "id": "tpl-platform",
        "params": ["Asha", order["name"], "https://track.example/AWB1234"],
    }
    assert sent["destination"] == CONSENTING.removeprefix("+")
    # The SMS of the event goes too: each channel is the merchant's own switch.
    assert len(texts(journey)) == 1
    status, bill = await call(journey, "GET", "billing")
    lines = {(line["provider"], line["account"], line["channel"]): line for line in bill["lines"]}
    assert lines[("gupshup", "platform", "whatsapp")]["event"] == "shipped"
    assert lines[("gupshup", "platform", "whatsapp")]["credits"] == 1
    assert lines[("exotel", "shop", "sms")]["messages"] == 1


async def test_a_paused_template_falls_back_to_sms_and_alerts_the_merchant(journey, gupshup):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)
    template = gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)
    assert (await enable(journey, "tpl-ok"))[0] == 200
    document = await journey.api("GET", "settings")
    document["notifications"]["events"]["shipped"]["sms"]["active"] = False  # WhatsApp only
    await journey.api("PUT", "settings", document)
    await opted_in_on_whatsapp(journey)

    template["status"] = "PAUSED"
    order = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(order))
    assert [m for m in gupshup.messages if "template" in m] == []
    (body,) = texts(journey)
    assert "has been fulfilled by Delhivery" in body
    # The order's own record (the hourly re-check records the template's, shop-wide).
    (alert,) = [d for d in await timeline(journey, "notification_fallback") if d.get("order")]
    assert alert["status"] == "PAUSED" and alert["fallback"] == "sms"
    assert alert["template_id"] == "tpl-ok" and "PAUSED" in alert["reason"]


async def test_gupshups_failure_event_falls_back_to_sms(journey, gupshup):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)
    gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)
    assert (await enable(journey, "tpl-ok"))[0] == 200
    document = await journey.api("GET", "settings")
    document["notifications"]["events"]["shipped"]["sms"]["active"] = False  # WhatsApp only
    await journey.api("PUT", "settings", document)
    await opted_in_on_whatsapp(journey)
    order = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(order))
    assert texts(journey) == []
    (gs_id,) = gupshup.accepted

    answer = await gupshup.send_event(
        journey.urls.gupshup(journey.shop_id),
        gs_id=gs_id,
        status="failed",
        destination=CONSENTING,
        code=131047,
        reason="Re-engagement message",
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    await journey.settle()
    (body,) = texts(journey)
    assert "has been fulfilled by Delhivery" in body
    (alert,) = await timeline(journey, "notification_fallback")
    assert alert["fallback"] == "sms" and alert["reason"] == "Re-engagement message"
