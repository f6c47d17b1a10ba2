"""The `/settings` notification pages through the real bot, app and webhook route, against
the fake Bot API and the fake Gupshup over HTTP: SMS turned active with quiet hours, a
template with an unknown token explained and asked again, then previewed with its segments
and credits; a WhatsApp notification refused for a template Gupshup has not APPROVED (and for
an unmapped variable), enabled with an approved one and disabled again; and on the platform's
WhatsApp account the per-message charge asked before anything is enabled."""

from __future__ import annotations

import pytest

from bot.handlers import notifications as whatsapp
from bot.handlers import settings as conversation
from providers.sandbox.gupshup import FakeGupshup
from tests.bot.conftest import bot_settings
from tests.bot.test_settings import Owner, shop_row, shop_with_token

TEXT = "Hi {{1}}, your order {{2}} is on its way: {{3}}"
WHATSAPP_PAGE = "Settings 10/10: WhatsApp notifications"
PHONE_RULE = "must be + and 8 to 15 digits, e.g. +919876543210"


@pytest.fixture
async def gupshup():
    fake = FakeGupshup()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def settings(database_url, telegram, port, gupshup):
    """The platform offers its Gupshup (WhatsApp); shops' own Gupshup apps are on the fake."""
    platform = {
        "api_key": gupshup.api_key,
        "app_name": gupshup.app_name,
        "source": gupshup.source,
        "api_url": gupshup.base_url,
    }
    return bot_settings(database_url, telegram, port, providers={"gupshup": platform})


async def to_page(owner: Owner, number: int) -> None:
    await owner.type("/settings")
    for _ in range(number - 1):
        await owner.tap("Save and proceed")
    assert owner.last.text.startswith(f"Settings {number}/10")


async def test_sms_notifications_with_quiet_hours_and_a_template_asked_again(
    res, webhook, telegram
):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await to_page(owner, 8)
    assert owner.last.text.startswith("Settings 8/10: Notifications")
    assert "SMS notifications: Not active" in owner.last.text
    await owner.tap("SMS notifications")
    await owner.tap("Active")
    await owner.tap("Quiet hours")
    await owner.tap("On")
    rule = "Input should be less than or equal to 23"
    await owner.answer_wrong_then_right("Quiet from (hour)", "25", "22", rule)
    assert "Quiet from (hour): 22" in owner.last.text
    await owner.tap("Save and proceed")

    assert owner.last.text.startswith("Settings 9/10: SMS notifications")
    assert "Shipped SMS: On" in owner.last.text
    await owner.tap("Shipped text")
    assert owner.last.text.startswith("Send the Shipped text (now: Hi [[fullname]]")
    await owner.type("Hi [[firstname]], %ordername% left us. Gift code: %giftcode%")
    wrong = owner.texts[-2]
    assert wrong.startswith("Shipped text not accepted: unknown token %giftcode% (allowed: ")
    assert owner.last.text.startswith("Send the Shipped text")
    await owner.type("Hi [[firstname]], %ordername% left us.{ Track it at %trackingurl%}")
    assert owner.texts[-2] == conversation.PREVIEW.format(
        text="Hi Asha, #1001 left us. Track it at https://track.example/1234567890",
        encoding="GSM-7",
        characters=68,
        segments=1,
        credits=1,
    )
    await owner.type("Hi [[firstname]], your order %ordername% is on its way ₹")
    assert owner.last.text == conversation.TAP_INSTEAD  # a value is asked by its button
    await owner.tap("Packed SMS")
    await owner.tap("Off")
    assert "Packed SMS: Off" in owner.last.text
    await owner.tap("Save and finish")
    assert owner.last.text.startswith(conversation.SAVED)

    notifications = (await shop_row(res, shop.shop_id)).settings["notifications"]
    assert notifications["sms_active"] is True
    assert notifications["quiet_hours"] == {"active": True, "start_hour": 22, "end_hour": 9}
    events = notifications["events"]
    assert events["shipped"]["sms"] == {
        "active": True,
        "text": "Hi [[firstname]], %ordername% left us.{ Track it at %trackingurl%}",
        "dlt_template_id": "",
    }
    assert events["packed"]["sms"]["active"] is False
    assert events["delivered"]["sms"]["active"] is True


async def own_gupshup(res, shop_id: int, gupshup: FakeGupshup) -> None:
    await res.account_desk().connect(
        shop_id,
        {
            "provider": "gupshup",
            "api_key": gupshup.api_key,
            "app_name": gupshup.app_name,
            "whatsapp_number": "+" + gupshup.source,
        },
    )


async def test_whatsapp_enabled_only_with_an_approved_template_its_variables_all_mapped(
    res, webhook, telegram, gupshup
):
    shop = await shop_with_token(res)
    await own_gupshup(res, shop.shop_id, gupshup)
    gupshup.add_template("tpl-pending", "order_shipped_v2", "PENDING", TEXT)
    gupshup.add_template("tpl-ok", "order_shipped", "APPROVED", TEXT)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await to_page(owner, 10)
    assert "Shipped on WhatsApp: off" in owner.last.text
    await owner.tap("WhatsApp: Shipped")
    assert owner.last.text == "Shipped on WhatsApp: off."
    assert whatsapp.DISABLE_BUTTON not in str(owner.last.buttons)
    await owner.tap(whatsapp.ENABLE_BUTTON)
    assert owner.last.text == whatsapp.ASK_TEMPLATE.format(event="Shipped")

    # Not approved at Gupshup: the provider's status is the reason, and the id asked again.
    await owner.type("tpl-pending")
    assert owner.last.text.startswith("Send the token of each of the template's variables")
    await owner.type("firstname, ordername, trackingurl")
    assert owner.texts[-2] == whatsapp.NOT_ENABLED.format(
        problem="the template tpl-pending is PENDING at the provider, not APPROVED"
    )
    assert owner.last.text == whatsapp.ASK_TEMPLATE.format(event="Shipped")

    # Approved, but a variable left unmapped: the tokens are asked again.
    await owner.type("tpl-ok")
    await owner.type("firstname, ordername")
    assert owner.texts[-2].startswith(
        "Not enabled: the template tpl-ok has 3 variable(s) and 2 are mapped"
    )
    assert owner.last.text.startswith("Send the token of each of the template's variables")
    await owner.type("[[firstname]], %ordername%, trackingurl")
    assert owner.texts[-2] == (
        whatsapp.ENABLED.format(event="Shipped", template_id="tpl-ok", status="APPROVED")
        + "\n\n"
        + whatsapp.PREVIEW.format(
            preview="Hi Asha, your order #1001 is on its way: https://track.example/1234567890"
        )
    )
    assert owner.last.text.startswith(WHATSAPP_PAGE)
    shown = "Shipped on WhatsApp: on, template tpl-ok ({{1}} firstname, {{2}} ordername, "
    assert shown in owner.last.text
    stored = (await shop_row(res, shop.shop_id)).settings["notifications"]["events"]
    assert stored["shipped"]["whatsapp"] == {
        "active": True,
        "template_id": "tpl-ok",
        "params": ["firstname", "ordername", "trackingurl"],
        "fallback_to_sms": True,
    }

    # The page's own values are saved with it, the enabled notification kept.
    await owner.tap("Shipped: SMS fallback")
    await owner.tap("No")
    await owner.tap("Save and finish")
    stored = (await shop_row(res, shop.shop_id)).settings["notifications"]["events"]
    assert stored["shipped"]["whatsapp"]["active"] is True
    assert stored["shipped"]["whatsapp"]["fallback_to_sms"] is False

    await to_page(owner, 10)
    await owner.tap("WhatsApp: Shipped")
    await owner.tap(whatsapp.DISABLE_BUTTON)
    assert owner.texts[-2] == whatsapp.DISABLED.format(event="Shipped")
    assert "Shipped on WhatsApp: off" in owner.last.text
    stored = (await shop_row(res, shop.shop_id)).settings["notifications"]["events"]
    assert stored["shipped"]["whatsapp"]["active"] is False
    assert stored["shipped"]["whatsapp"]["template_id"] == "tpl-ok"


async def test_the_platforms_account_asks_for_the_per_message_charge_first(
    res, webhook, telegram, gupshup
):
    shop = await shop_with_token(res)
    gupshup.add_template("tpl-platform", "order_shipped", "APPROVED", TEXT)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await to_page(owner, 10)
    # No WhatsApp account yet: said, and back to the page.
    await owner.tap("WhatsApp: Delivered")
    await owner.tap(whatsapp.ENABLE_BUTTON)
    await owner.type("tpl-platform")
    await owner.type("firstname, ordername, trackingurl")
    assert owner.texts[-2] == (
        whatsapp.NOT_ENABLED.format(problem="no whatsapp account is connected for this shop")
        + f" {whatsapp.NO_ACCOUNT_HINT}"
    )
    assert owner.last.text.startswith(WHATSAPP_PAGE)

    await res.account_desk().connect(shop.shop_id, {"provider": "gupshup", "platform": True})
    await owner.tap("WhatsApp: Delivered")
    await owner.tap(whatsapp.ENABLE_BUTTON)
    await owner.type("tpl-platform")
    await owner.type("firstname, ordername, trackingurl")
    assert owner.last.text == whatsapp.ASK_CHARGE.format(event="Delivered")

    await owner.tap(whatsapp.NOT_NOW)
    assert owner.last.text.startswith(WHATSAPP_PAGE)
    notifications = (await shop_row(res, shop.shop_id)).settings.get("notifications", {})
    assert notifications.get("whatsapp_charge_accepted", False) is False

    await owner.tap(whatsapp.ACCEPT_BUTTON)  # the question's button, tapped after all
    assert owner.texts[-2].startswith(
        whatsapp.ENABLED.format(event="Delivered", template_id="tpl-platform", status="APPROVED")
    )
    notifications = (await shop_row(res, shop.shop_id)).settings["notifications"]
    assert notifications["whatsapp_charge_accepted"] is True
    assert notifications["events"]["delivered"]["whatsapp"]["active"] is True


async def test_the_merchants_own_sms_alerts_and_dlt_ids_are_set_in_the_chat(
    res, webhook, telegram
):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await to_page(owner, 8)
    label = "Your number for SMS alerts"
    await owner.answer_wrong_then_right(label, "12", "+919876543210", PHONE_RULE)
    await owner.tap("Callback request (to you) SMS")
    await owner.tap("Off")
    await owner.tap("New order (to you) DLT template id")
    await owner.type("1107160000000000001")
    await owner.tap("Notifications' DLT entity id")
    await owner.type("1101000000000001")
    await owner.tap("Save and proceed")
    await owner.tap("Shipped DLT template id")
    await owner.type("1107160000000000002")
    await owner.tap("Save and finish")
    assert owner.last.text.startswith(conversation.SAVED)

    notifications = (await shop_row(res, shop.shop_id)).settings["notifications"]
    merchant = notifications["merchant"]
    assert merchant["phone"] == "+919876543210"
    assert (merchant["new_order"]["active"], merchant["new_order"]["dlt_template_id"]) == (
        True,
        "1107160000000000001",
    )
    assert merchant["callback_requested"]["active"] is False
    assert notifications["dlt_entity_id"] == "1101000000000001"
    assert notifications["events"]["shipped"]["sms"]["dlt_template_id"] == "1107160000000000002"
