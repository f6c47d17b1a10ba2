"""Customer threads in the merchant's chat (issue 17): a customer's message for the merchant
is forwarded to the shop's linked chats, and the merchant's answer (the Reply button then
the text, or a Telegram reply to the forwarded message) goes back on the customer's channel
from the number they wrote to, through the fake provider; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from providers.sandbox.telegram import WEBHOOK_SECRET_HEADER
from storage.models import Thread
from tests.bot.test_alerts import (
    AGENT,
    OTHER,
    OWNER,
    alerts,
    fakes,
    scan,
    settings,
    two_shops,
    worker,
)
from tests.web.test_messaging import CUSTOMER, SMS_FROM, wrote_from

__all__ = ["fakes", "settings", "worker"]  # the alerts tests' fixtures, used here too

FORWARDED = (
    f"Message from {CUSTOMER} on SMS:\n\nWhere is my parcel?\n\n"
    "Reply to this message (or press Reply) to answer on the same channel."
)


async def customer_writes(res, webhook, fakes, worker, text: str) -> None:
    url = str(webhook.server.make_url("/webhooks/twilio/messages"))
    status, _ = await fakes["twilio"].send_inbound(url, from_=CUSTOMER, to=SMS_FROM, body=text)
    assert status == 200
    await worker.run_until_idle()
    await scan(res, worker)


def answers(fakes) -> list[tuple[str, str, str]]:
    return [
        (sent["To"], sent["From"], sent["Body"])
        for sent in fakes["twilio"].accepted_messages.values()
    ]


async def test_a_customer_message_is_relayed_and_answered_with_the_reply_button(
    res, webhook, telegram, fakes, worker
):
    acme, _ = await two_shops(res, telegram, worker)
    await wrote_from(res, acme, "twilio", SMS_FROM)
    await customer_writes(res, webhook, fakes, worker, "Where is my parcel?")
    assert alerts(telegram, OWNER) == [FORWARDED]
    assert alerts(telegram, AGENT) == [FORWARDED]
    assert alerts(telegram, OTHER) == []

    forwarded = telegram.chat(AGENT).from_bot[-1]
    assert await telegram.press(AGENT, forwarded.message_id, forwarded.button_data("Reply")) == 200
    assert (
        telegram.chat(AGENT).texts[-1] == f"Send your answer to {CUSTOMER} (sms); /cancel stops."
    )
    assert await telegram.type(AGENT, "   ") == 200
    assert telegram.chat(AGENT).texts[-1] == "An answer needs some text. Send it again."
    assert await telegram.type(AGENT, "Tomorrow before noon.") == 200
    assert telegram.chat(AGENT).texts[-1] == f"Sent to {CUSTOMER}."
    await worker.run_until_idle()
    assert answers(fakes) == [(CUSTOMER, SMS_FROM, "Tomorrow before noon.")]
    async with res.db.sessions() as session:
        thread = await session.scalar(select(Thread))
    assert (thread.shop_id, thread.status) == (acme.shop_id, "answered")

    # Another shop's chat cannot answer the thread, even with its button's data.
    own = telegram.chat(OTHER).from_bot[-1]
    assert await telegram.press(OTHER, own.message_id, forwarded.button_data("Reply")) == 200
    assert telegram.chat(OTHER).callback_answers[-1].startswith("That conversation is not")


async def test_a_telegram_reply_to_the_forwarded_message_answers_the_customer(
    res, webhook, telegram, fakes, worker
):
    acme, _ = await two_shops(res, telegram, worker)
    await wrote_from(res, acme, "twilio", SMS_FROM)
    await customer_writes(res, webhook, fakes, worker, "Where is my parcel?")
    forwarded = telegram.chat(OWNER).from_bot[-1]
    bot = {"id": telegram.bot_id, "is_bot": True, "first_name": "OrderTalk"}
    chat = {"id": OWNER, "type": "private", "first_name": "Owner"}
    user = {"id": OWNER, "is_bot": False, "first_name": "Owner"}
    date = int(res.clock.now().timestamp())
    original = {
        "message_id": forwarded.message_id,
        "date": date,
        "chat": chat,
        "from": bot,
        "text": forwarded.text,
        "reply_markup": {
            "inline_keyboard": [
                [{"text": text, "callback_data": data} for text, data in row]
                for row in forwarded.buttons
            ]
        },
    }
    update = {
        "update_id": 10_000,
        "message": {
            "message_id": 10_000,
            "date": date,
            "chat": chat,
            "from": user,
            "text": "It left the warehouse today.",
            "reply_to_message": original,
        },
    }
    headers = {WEBHOOK_SECRET_HEADER: telegram.webhook_secret}
    async with res.http.post(telegram.webhook_url, json=update, headers=headers) as answer:
        assert answer.status == 200
    assert telegram.chat(OWNER).texts[-1] == f"Sent to {CUSTOMER}."
    await worker.run_until_idle()
    assert answers(fakes) == [(CUSTOMER, SMS_FROM, "It left the warehouse today.")]
