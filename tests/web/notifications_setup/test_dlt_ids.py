"""DLT ids of notification SMS (Exotel in India): each template's id and the entity id reach
Exotel with the SMS, as verification SMS carry theirs, and the setup list flags an active
SMS notification without its id while SMS go through Exotel."""

from __future__ import annotations

from tests.web.notifications.helpers import NOTIFYING, fulfillment, paid_order, webhook

ENTITY, SHIPPED, NEW_ORDER = "1101000000000001", "1107000000000011", "1107000000000012"


def flagged(setup: dict) -> set[str]:
    return {warning["field"] for warning in setup["warnings"]}


async def test_each_notification_sms_carries_its_dlt_ids_to_exotel(journey):
    await journey.install(NOTIFYING)
    document = await journey.api("GET", "settings")
    notifications = document["notifications"]
    notifications["dlt_entity_id"] = ENTITY
    notifications["events"]["shipped"]["sms"]["dlt_template_id"] = SHIPPED
    notifications["merchant"] |= {"phone": "+919800000077"}
    notifications["merchant"]["new_order"]["dlt_template_id"] = NEW_ORDER
    await journey.api("PUT", "settings", document)

    order = await paid_order(journey)
    await webhook(journey, "fulfillments/create", fulfillment(order))
    sent = {form["To"][-10:]: form for form in journey.exotel.sms}
    assert (sent["9800000077"]["DltEntityId"], sent["9800000077"]["DltTemplateId"]) == (
        ENTITY,
        NEW_ORDER,
    )
    customer = sent[order["customer"]["phone"][-10:]]
    assert (customer["DltEntityId"], customer["DltTemplateId"]) == (ENTITY, SHIPPED)
    assert "fulfilled" in customer["Body"]


async def test_the_setup_list_flags_active_sms_without_dlt_ids_on_exotel(journey):
    await journey.install({"ivr": {"timezone": "Asia/Kolkata"}})
    assert (await journey.api("GET", "setup"))["warnings"] == []  # SMS not active yet

    document = await journey.api("GET", "settings")
    document["notifications"]["sms_active"] = True
    document["notifications"]["events"]["packed"]["sms"]["active"] = False
    await journey.api("PUT", "settings", document)
    setup = await journey.api("GET", "setup")
    assert setup["status"] == "installed"  # verification works: these are warnings
    assert flagged(setup) == {
        "notifications.sms_sender_id",
        "notifications.dlt_entity_id",
        *(
            f"notifications.events.{event}.sms.dlt_template_id"
            for event in document["notifications"]["events"]
            if event != "packed"
        ),
    }

    notifications = document["notifications"]
    notifications |= {"sms_sender_id": "DEMOSH", "dlt_entity_id": ENTITY}
    for number, event in enumerate(notifications["events"].values()):
        event["sms"]["dlt_template_id"] = f"11070000000001{number:02}"
    notifications["merchant"]["phone"] = "+919800000077"
    await journey.api("PUT", "settings", document)
    assert flagged(await journey.api("GET", "setup")) == {
        "notifications.merchant.new_order.dlt_template_id",
        "notifications.merchant.callback_requested.dlt_template_id",
    }
    notifications["merchant"]["new_order"]["dlt_template_id"] = NEW_ORDER
    notifications["merchant"]["callback_requested"]["active"] = False
    await journey.api("PUT", "settings", document)
    assert flagged(await journey.api("GET", "setup")) == set()
