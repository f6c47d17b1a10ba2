"""The `/settings` Channels page through the real bot, app and webhook route against the fake
Bot API: the owner picks the account that carries SMS (the setup list follows) and removes an
account after a confirmation that says what each channel it carries is left with."""

from __future__ import annotations

from sqlalchemy import select

from bot.handlers import channels as page
from storage.models import ProviderAccount
from tests.bot import test_settings
from tests.bot.test_settings import OWNER, RC_NUMBER, Owner, shop_with_token

# The settings conversation's fakes and settings.
exotel, ringcentral = test_settings.exotel, test_settings.ringcentral
settings = test_settings.settings

PLATFORM_TWILIO = "platform Twilio account (+15005550001)"  # the platform's SMS number
OWN_RC = f"shop RingCentral account ({RC_NUMBER})"


async def to_channels_page(owner: Owner) -> None:
    await owner.type("/settings")
    for _ in range(3):
        await owner.tap("Save and proceed")
    assert owner.last.text.startswith("Settings 4/10: Channels")


async def account_ids(res) -> dict[str, int]:
    async with res.db.sessions() as session:
        rows = await session.scalars(select(ProviderAccount))
        return {row.provider: row.id for row in rows}


async def test_the_owner_picks_the_account_of_sms_and_removes_one_once_confirmed(
    res, webhook, telegram, ringcentral
):
    shop = await shop_with_token(res)
    desk = res.account_desk()
    await desk.connect(shop.shop_id, {"provider": "twilio", "platform": True})
    await desk.connect(
        shop.shop_id,
        {
            "provider": "ringcentral",
            "client_id": ringcentral.client_id,
            "client_secret": ringcentral.client_secret,
            "jwt": ringcentral.jwt,
            "sms_number": RC_NUMBER,
        },
    )
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await to_channels_page(owner)
    shown = owner.last.text
    assert f"Calls: {PLATFORM_TWILIO}" in shown
    assert f"SMS: {PLATFORM_TWILIO}" in shown
    assert f"  also offered by: {OWN_RC}" in shown
    assert "WhatsApp: no account" in shown

    # The first connected carries SMS until the owner picks the other.
    await owner.tap(f"SMS by the {OWN_RC}")
    assert owner.texts[-2] == page.CARRIED.format(channel="SMS", account=OWN_RC)
    assert f"SMS: {OWN_RC}" in owner.last.text
    setup = await desk.setup(shop.shop_id)
    assert setup["channels"]["sms"]["provider"] == "ringcentral"
    assert setup["channels"]["voice"]["provider"] == "twilio"
    await owner.type("/status")
    assert "sms: shop ringcentral account" in owner.last.text

    # Removing the account that carries SMS: told first, kept when the owner says so.
    await to_channels_page(owner)
    await owner.tap(f"Remove the {OWN_RC}")
    heir = f"SMS will be carried by the {PLATFORM_TWILIO}."
    assert owner.last.text == page.REMOVE_WHAT.format(account=OWN_RC, consequences=heir)
    await owner.tap(page.KEEP)
    assert owner.last.text.startswith("Settings 4/10: Channels")
    assert set(await account_ids(res)) == {"twilio", "ringcentral"}
    await owner.tap(f"Remove the {OWN_RC}")
    await owner.tap(page.YES_REMOVE)
    assert owner.texts[-2] == page.REMOVED.format(account=OWN_RC, consequences=heir)
    assert f"SMS: {PLATFORM_TWILIO}" in owner.last.text
    assert set(await account_ids(res)) == {"twilio"}

    # The last account: every channel it carries is left without one.
    await owner.tap(f"Remove the {PLATFORM_TWILIO}")
    assert owner.last.text.endswith("Calls will have no account. SMS will have no account.")
    await owner.tap(page.YES_REMOVE)
    assert await account_ids(res) == {}
    assert "Calls: no account" in owner.last.text and "SMS: no account" in owner.last.text
    setup = await desk.setup(shop.shop_id)
    assert setup["channels"] == {"voice": None, "sms": None, "whatsapp": None}
    assert setup["status"] == "partially_installed"
    # The confirmation's button, once the account is gone, removes nothing and says so.
    await owner.tap(page.YES_REMOVE)
    assert owner.texts[-2] == "That is no longer on the page: here it is again."
    assert telegram.chat(OWNER).callback_answers[-1] == ""
