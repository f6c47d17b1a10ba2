"""Issue 14, item 0: a WhatsApp button's answer comes from what identifies the button (its
postback, else its title), never from Gupshup's quick-reply `id` (our own message id).

Every button is pressed on orders whose WhatsApp messages have ids 1 to 5, through Gupshup
with and without `postbackText`, and through Twilio's numbered text."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from providers.sandbox.twilio import FakeTwilio
from settings import Settings
from storage.models import Message
from tests.conftest import SECURITY
from tests.web.test_verification_journeys import WHATSAPP_FIRST, Journey

WHATSAPP_FROM = "+14155238886"
TITLES = {"confirm": "Confirm", "cancel": "Cancel", "callback": "Call me"}
STATUS = {"confirm": "confirmed", "cancel": "cancelled", "callback": "callback_requested"}
TAGS = {"confirm": ["cod_confirmed"], "cancel": ["cod_cancelled"], "callback": ["cod_callback"]}
SHAPES = ["gupshup_postback", "gupshup_title_only", "twilio_numbered_text"]


@pytest.fixture
async def twilio():
    fake_twilio = FakeTwilio()
    await fake_twilio.start()
    yield fake_twilio
    await fake_twilio.close()


@pytest.fixture
def settings(database_url, fake, exotel, gupshup, twilio, port):
    return Settings(
        database={"url": database_url},
        server={"public_url": f"http://127.0.0.1:{port}"},
        security=SECURITY,
        shopify={
            "api_key": "journeys-app-key",
            "api_secret": "shpss_" + "fedcba9876543210" * 2,
            "admin_url": fake.admin_url_template,
        },
        providers={
            "exotel": {"api_url": exotel.base_url},
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "whatsapp_from": WHATSAPP_FROM,
            },
        },
    )


async def install(journey: Journey, shape: str) -> None:
    """The journeys' shop; WhatsApp by Gupshup, or (numbered text) by Twilio."""
    await journey.install(WHATSAPP_FIRST)
    if shape == "twilio_numbered_text":
        desk = journey.res.account_desk()
        account = await desk.connect(journey.shop_id, {"provider": "twilio", "platform": True})
        await desk.choose(journey.shop_id, {"whatsapp": account["id"]})


async def press(journey: Journey, gupshup, twilio, shape: str, phone: str, action: str) -> None:
    if shape == "twilio_numbered_text":
        number = str(list(TITLES).index(action) + 1)
        answer = await twilio.send_inbound(
            journey.urls.twilio("messages"),
            from_=phone,
            to=WHATSAPP_FROM,
            body=number,
            whatsapp=True,
        )
    else:
        destination = phone.removeprefix("+")
        sent = next(m for m in gupshup.accepted.values() if m["destination"] == destination)
        options = sent["message"]["options"]
        option = next(o for o in options if o["title"] == TITLES[action])
        answer = await gupshup.send_button_reply(
            journey.urls.gupshup(),
            from_phone=phone,
            title=option["title"],
            reply_id=sent["message"]["msgid"],
            postback=option["postbackText"] if shape == "gupshup_postback" else None,
        )
    assert answer[0] == 200, answer
    await journey.worker.run_until_idle()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("action", list(TITLES))
async def test_each_button_records_its_own_answer_whatever_the_message_id(
    journey: Journey, gupshup, twilio, shape: str, action: str
):
    await install(journey, shape)
    phones = [f"+9198765000{n:02d}" for n in range(1, 6)]
    orders = [await journey.order(phone=phone) for phone in phones]
    async with journey.res.db.sessions() as session:
        sent = list(await session.scalars(select(Message).order_by(Message.id)))
    assert [(m.id, m.channel, m.to_phone) for m in sent] == [
        (n, "whatsapp", phone) for n, phone in enumerate(phones, start=1)
    ]
    for phone, payload in zip(phones, orders, strict=True):
        await press(journey, gupshup, twilio, shape, phone, action)
        assert await journey.status(payload) == STATUS[action], (phone, shape)
        assert journey.tags(payload) == TAGS[action]
    assert journey.exotel.calls == []
