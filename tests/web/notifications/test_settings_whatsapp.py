"""`PUT /api/v1/shop/settings` checks a WhatsApp notification it newly enables as
`PUT /notifications/whatsapp/{event}` does: live with Gupshup (a template not APPROVED is
refused with the provider's status), the platform's charge accepted first, nothing saved."""

from __future__ import annotations

from tests.web.notifications.helpers import NOTIFYING
from tests.web.notifications.test_api import call
from tests.web.notifications.test_whatsapp import PARAMS, TEXT, own_gupshup
from tests.web.test_verification_journeys import Journey

SHIPPED = "notifications.events.shipped.whatsapp"


async def with_shipped_on(journey: Journey, template_id: str, **notifications) -> dict:
    document = await journey.api("GET", "settings")
    document["notifications"].update(notifications)
    document["notifications"]["events"]["shipped"]["whatsapp"] = {
        "active": True,
        "template_id": template_id,
        "params": PARAMS,
        "fallback_to_sms": True,
    }
    return document


async def test_a_document_enabling_a_template_that_is_not_approved_is_refused(journey, gupshup):
    await journey.install(NOTIFYING)
    await own_gupshup(journey, gupshup)
    gupshup.add_template("tpl-pending", "order_shipped_v2", "PENDING", TEXT)
    template = gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)
    before = await journey.api("GET", "settings")

    status, answer = await call(
        journey, "PUT", "shop/settings", await with_shipped_on(journey, "tpl-pending")
    )
    assert status == 409, answer
    assert answer["error"]["code"] == "template_not_usable"
    assert answer["error"]["provider_status"] == "PENDING"
    assert [f["field"] for f in answer["error"]["fields"]] == [f"{SHIPPED}.template_id"]
    assert await journey.api("GET", "settings") == before

    document = await with_shipped_on(journey, "tpl-ok")
    document["notifications"]["events"]["shipped"]["whatsapp"]["params"] = PARAMS[:1]
    status, answer = await call(journey, "PUT", "shop/settings", document)
    assert status == 409 and answer["error"]["fields"][0]["field"] == f"{SHIPPED}.params"

    status, saved = await call(
        journey, "PUT", "shop/settings", await with_shipped_on(journey, "tpl-ok")
    )
    assert status == 200, saved
    assert saved["notifications"]["events"]["shipped"]["whatsapp"]["template_id"] == "tpl-ok"
    # Saved again unchanged, the notification is not newly enabled: Gupshup is not asked,
    # and a template paused since is left to the notifications' own re-check.
    template["status"] = "PAUSED"
    saved["notifications"]["quiet_hours"]["active"] = True
    status, answer = await call(journey, "PUT", "shop/settings", saved)
    assert status == 200, answer


async def test_a_document_enabling_the_platforms_account_needs_the_charge_accepted(
    journey, gupshup
):
    await journey.install(NOTIFYING)
    gupshup.add_template("tpl-platform", "order_shipped", "APPROVED", TEXT)
    status, answer = await call(
        journey, "PUT", "shop/settings", await with_shipped_on(journey, "tpl-platform")
    )
    assert status == 409 and answer["error"]["code"] == "charge_not_accepted"
    fields = [f["field"] for f in answer["error"]["fields"]]
    assert fields == ["notifications.whatsapp_charge_accepted"]

    document = await with_shipped_on(journey, "tpl-platform", whatsapp_charge_accepted=True)
    status, saved = await call(journey, "PUT", "shop/settings", document)
    assert status == 200, saved
    assert saved["notifications"]["whatsapp_charge_accepted"] is True
