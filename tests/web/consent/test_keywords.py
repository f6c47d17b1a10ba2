"""Compliance keywords and the send gate end to end: signed inbound messages into the real
app, the real worker, and the confirmations and suppressed sends seen by the fake providers
(SMS by Twilio, WhatsApp by Gupshup), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from flows.channels.callback_urls import PLATFORM, ringcentral_token, shop_token
from flows.channels.messaging import SEND_JOB, MessageSender
from flows.channels.provider_events import EVENT_JOB, event_payload
from flows.conversations import consent
from flows.conversations.replies import START_TEXT, STOP_TEXT
from providers.events import InboundMessage
from storage.jobs import NewJob, Worker
from storage.models import Activity, Consent, ConsentEvent, Job, Message, Shop
from storage.ratelimit import Slot
from tests.web.test_messaging import CUSTOMER, SMS_FROM, count, message, send


async def inbound_sms(fakes, server, body: str, **extra) -> None:
    url = str(server.make_url("/webhooks/twilio/messages"))
    status, _ = await fakes["twilio"].send_inbound(
        url, from_=CUSTOMER, to=SMS_FROM, body=body, **extra
    )
    assert status == 200


async def consents(res) -> list[tuple[str, str, str]]:
    async with res.db.sessions() as session:
        rows = await session.scalars(select(Consent).order_by(Consent.channel))
        return [(row.channel, row.state, row.source) for row in rows]


async def history(res) -> list[tuple[str, str]]:
    async with res.db.sessions() as session:
        rows = await session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        return [(row.channel, row.state) for row in rows]


async def run(worker, clock) -> None:
    """Run the worker until idle, then let the sender's rate limit (1 SMS/s) pass."""
    await worker.run_until_idle()
    clock.advance(timedelta(seconds=1))


def bodies(fakes) -> list[str]:
    return [sent["Body"] for sent in fakes["twilio"].messages]


async def test_stop_opts_out_confirms_once_and_later_sends_are_suppressed(
    res, server, worker, fakes, order, clock
):
    await inbound_sms(fakes, server, "  Stop. ")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    assert fakes["twilio"].messages[0]["To"] == CUSTOMER
    assert await consents(res) == [("sms", "opted_out", "keyword")]
    assert await history(res) == [("sms", "opted_out")]

    message_id = await send(res, order, key="after-stop")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    row = await message(res, message_id)
    assert (row.status, row.error_code) == ("suppressed", "OPTED_OUT")
    assert "opted out of sms" in row.error
    async with res.db.sessions() as session:
        timeline = await session.scalar(
            select(Activity).where(Activity.kind == "message_suppressed")
        )
    assert timeline.detail["code"] == "OPTED_OUT" and timeline.order_id == order.id

    # WhatsApp is another channel: its consent stands.
    whatsapp_id = await send(res, order, channel="whatsapp", key="wa-after-stop")
    await run(worker, clock)
    assert (await message(res, whatsapp_id)).status == "sent"


async def test_start_opts_back_in_with_one_confirmation(res, server, worker, fakes, order, clock):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    await inbound_sms(fakes, server, "unstop")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT, START_TEXT]
    assert await consents(res) == [("sms", "opted_in", "keyword")]
    assert await history(res) == [("sms", "opted_out"), ("sms", "opted_in")]
    message_id = await send(res, order, key="after-start")
    await run(worker, clock)
    assert (await message(res, message_id)).status == "sent"


async def test_help_answers_with_the_shop_contact_phone(res, server, worker, fakes, order, clock):
    async with res.db.transaction() as session:
        shop = await session.get(Shop, order.shop_id)
        shop.settings = {"contact_phone": "+918040001234"}
    await inbound_sms(fakes, server, "info")
    await run(worker, clock)
    assert bodies(fakes) == [
        "Please call +918040001234 for more information, or text STOP to stop these messages. "
        "Msg & Data rates may apply."
    ]
    assert await consents(res) == []


async def test_yes_is_a_start_keyword_only_when_no_question_is_open(
    res, server, worker, fakes, order, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    await inbound_sms(fakes, server, "Yes")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT, START_TEXT]
    assert await consents(res) == [("sms", "opted_in", "keyword")]


async def test_twilio_advanced_opt_out_is_recorded_without_a_reply(
    res, server, worker, fakes, order, clock
):
    await inbound_sms(fakes, server, "STOP", opt_out_type="STOP")
    await inbound_sms(fakes, server, "HELP", opt_out_type="HELP")
    await run(worker, clock)
    assert bodies(fakes) == []
    assert await consents(res) == [("sms", "opted_out", "keyword")]
    message_id = await send(res, order, key="after-opt-out")
    await run(worker, clock)
    assert bodies(fakes) == []
    assert (await message(res, message_id)).status == "suppressed"


async def test_a_duplicate_inbound_stop_changes_and_sends_nothing_new(
    res, server, worker, fakes, order, clock
):
    url = str(server.make_url("/webhooks/ringcentral"))
    token = ringcentral_token(res.settings.secret_key())
    for _ in range(2):  # the provider repeats its delivery
        ok, _ = await fakes["ringcentral"].deliver_sms(
            url,
            from_phone=CUSTOMER,
            to_phone="+16505550100",
            text="STOP",
            message_id="555",
            verification_token=token,
        )
        assert ok == 200
    # The same event handled twice (a job retried after its commit was lost).
    event = InboundMessage("twilio", "SM-dup", "sms", CUSTOMER, SMS_FROM, "STOP")
    async with res.db.transaction() as session:
        for key in ("a", "b"):
            await res.queue.enqueue(
                session, NewJob(EVENT_JOB, event_payload(event), idempotency_key=key)
            )
    await run(worker, clock)
    await run(worker, clock)
    # One per distinct inbound message, each through the provider it came in by.
    assert bodies(fakes) == [STOP_TEXT]
    assert [m["subject"] for m in fakes["ringcentral"].messages] == [STOP_TEXT]
    assert await history(res) == [("sms", "opted_out")]
    assert await count(res, Message, Message.idempotency_key.like("keyword:%")) == 2


async def test_a_message_queued_before_stop_and_due_after_it_is_suppressed(
    res, server, worker, fakes, order, clock
):
    message_id = await send(res, order, key="queued-before-stop")
    async with res.db.transaction() as session:
        await session.execute(
            update(Job)
            .where(Job.kind == SEND_JOB)
            .values(due_at=clock.now() + timedelta(minutes=5))
        )
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    clock.advance(timedelta(minutes=5))
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    assert (await message(res, message_id)).status == "suppressed"


async def test_whatsapp_stop_through_gupshup_opts_out_of_whatsapp_only(
    res, server, worker, fakes, order, clock
):
    url = str(
        server.make_url(f"/webhooks/gupshup/{shop_token(res.settings.secret_key(), PLATFORM)}")
    )
    assert (await fakes["gupshup"].send_text(url, from_phone=CUSTOMER, text="UNSUBSCRIBE"))[
        0
    ] == 200
    await run(worker, clock)
    [confirmation] = fakes["gupshup"].messages
    assert confirmation["destination"] == CUSTOMER.removeprefix("+")
    assert STOP_TEXT in str(confirmation["message"])
    assert await consents(res) == [("whatsapp", "opted_out", "keyword")]
    whatsapp_id = await send(res, order, channel="whatsapp", key="wa-after-stop")
    sms_id = await send(res, order, key="sms-after-wa-stop")
    await run(worker, clock)
    assert (await message(res, whatsapp_id)).status == "suppressed"
    assert (await message(res, sms_id)).status == "sent"
    assert len(fakes["gupshup"].messages) == 1


async def test_a_pressed_button_titled_cancel_is_not_a_keyword(
    res, server, worker, fakes, order, clock
):
    url = str(
        server.make_url(f"/webhooks/gupshup/{shop_token(res.settings.secret_key(), PLATFORM)}")
    )
    reply = await fakes["gupshup"].send_button_reply(
        url, from_phone=CUSTOMER, title="Cancel", postback="cancel:1001"
    )
    assert reply[0] == 200
    await run(worker, clock)
    assert await consents(res) == [] and fakes["gupshup"].messages == []


async def test_a_message_leased_by_a_worker_when_stop_arrives_is_not_sent(
    res, fakes, order, clock
):
    class StopArrives:
        """The sender's rate limiter, asked after the message was leased and routed: the
        customer's STOP commits at that moment."""

        async def reserve(self, key: str, per_second: float, count: int = 1) -> list[Slot]:
            async with res.db.transaction() as session:
                await consent.record(
                    session,
                    clock.now(),
                    shop_id=order.shop_id,
                    phone=CUSTOMER,
                    channel="sms",
                    state=consent.OPTED_OUT,
                    source="keyword",
                )
            return await res.limiter.reserve(key, per_second, count)

    async def never_refused(account_id: int, reason: str) -> None:
        raise AssertionError(f"account {account_id} refused: {reason}")

    sender = MessageSender(res.db, clock, StopArrives(), res.router(), res.keys, never_refused)
    worker = Worker(
        res.queue,
        {SEND_JOB: sender.handle},
        clock=clock,
        settings=res.queue.settings,
        wakeup=res.db.wakeup,
    )
    message_id = await send(res, order, key="leased")
    await worker.run_until_idle()
    assert bodies(fakes) == []
    assert (await message(res, message_id)).status == "suppressed"
