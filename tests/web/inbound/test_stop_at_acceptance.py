"""STOP committed with the inbound message that carries it, before the provider has its 2xx:
the keyword's line consent is in force when the answer goes back, with no job run yet; the
send gate honours it for a message a worker already holds, and on the platform's shared
number for every shop sending from it. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from sqlalchemy import select

from flows.channels.callback_urls import shop_token
from flows.channels.messaging import SEND_JOB, MessageSender, queue_message
from flows.channels.provider_events import EVENT_JOB
from flows.conversations.consent import OPTED_IN, OPTED_OUT, opted_out
from storage.inbox_store import BatchStore, ConsentWrite, Delivery, ShopDelivery
from storage.models import Consent, Customer, Job, LineConsent, Shop
from tests.web.test_messaging import CUSTOMER, SMS_FROM, message, send, wrote_from

PLATFORM_SMS = "twilio:platform"


async def texted(fakes, server, body: str, **extra) -> None:
    """The customer texts the platform's Twilio number (signed, as Twilio posts it)."""
    url = str(server.make_url("/webhooks/twilio/messages"))
    status, _ = await fakes["twilio"].send_inbound(
        url, from_=CUSTOMER, to=SMS_FROM, body=body, **extra
    )
    assert status == 200


async def lines(res) -> list[tuple[str, str, str, str]]:
    async with res.db.sessions() as session:
        rows = await session.scalars(select(LineConsent).order_by(LineConsent.line))
        return [(row.line, row.phone, row.channel, row.state) for row in rows]


async def gate(res, shop_id: int, platform_line: str | None = PLATFORM_SMS) -> bool:
    async with res.db.sessions() as session:
        return await opted_out(session, shop_id, CUSTOMER, "sms", platform_line)


async def second_shop(res) -> int:
    """Another shop whose SMS also go out through the platform's Twilio number, with the same
    customer (who bought there earlier)."""
    now = res.clock.now()
    async with res.db.transaction() as session:
        shop = Shop(domain="second.myshopify.com", name="Second", created_at=now, updated_at=now)
        session.add(shop)
        await session.flush()
        # Known there before: the STOP's job takes the first shop for the customer's.
        earlier = now - timedelta(days=30)
        session.add(Customer(shop_id=shop.id, phone=CUSTOMER, name="Asha", created_at=earlier))
    await res.account_desk().connect(shop.id, {"provider": "twilio", "platform": True})
    return shop.id


async def test_stop_is_in_force_before_its_job_runs(res, server, fakes, order, clock):
    await texted(fakes, server, " stop! ")
    # No worker has run: the receipt's transaction holds the opt-out.
    assert await lines(res) == [(PLATFORM_SMS, CUSTOMER, "sms", OPTED_OUT)]
    async with res.db.sessions() as session:
        [row] = await session.scalars(select(LineConsent))
    assert row.reference.startswith("twilio:SM") and row.updated_at == clock.now()
    assert await gate(res, order.shop_id)
    # The shop's own line is untouched: a message through its own account may still go.
    assert not await gate(res, order.shop_id, platform_line=None)
    # WhatsApp is another channel.
    async with res.db.sessions() as session:
        assert not await opted_out(session, order.shop_id, CUSTOMER, "whatsapp", PLATFORM_SMS)


async def test_help_yes_free_text_and_buttons_set_no_consent(res, server, fakes, order):
    for body in ("HELP", "info", "Yes", "stop sending me the wrong parcel"):
        await texted(fakes, server, body)
    await texted(fakes, server, "STOP", whatsapp=True, button_payload="stop:1001")
    assert await lines(res) == []


async def test_advanced_opt_out_and_start_move_the_line(res, server, fakes, order, clock):
    await texted(fakes, server, "STOP", opt_out_type="STOP")
    assert await gate(res, order.shop_id)
    clock.advance(timedelta(seconds=1))
    await texted(fakes, server, "unstop")
    assert await lines(res) == [(PLATFORM_SMS, CUSTOMER, "sms", OPTED_IN)]
    assert not await gate(res, order.shop_id)


async def test_a_repeated_stop_does_not_undo_a_later_start(res, server, fakes, order, clock):
    token = shop_token(res.settings.secret_key(), order.shop_id)
    url = str(server.make_url(f"/webhooks/exotel/{token}/sms"))
    stop = {"SmsSid": "sms-1", "From": "09876543210", "To": "08047112345", "Body": "STOP"}
    start = stop | {"SmsSid": "sms-2", "Body": "START"}
    async with aiohttp.ClientSession() as http:
        for form in (stop, start, stop):  # Exotel repeats the first
            async with http.post(url, data=form) as response:
                assert response.status == 200
            clock.advance(timedelta(seconds=1))
    async with res.db.sessions() as session:
        [row] = await session.scalars(select(LineConsent))
    assert (row.line, row.state, row.reference) == (
        f"shop:{order.shop_id}",
        OPTED_IN,
        "exotel:sms-2",
    )


async def test_the_last_keyword_of_a_batch_wins_among_new_deliveries(res, order, clock):
    store = BatchStore(res.db, max_attempts=3)

    def delivery(message_id: str, state: str) -> ShopDelivery:
        consent = ConsentWrite("shop:1", CUSTOMER, "sms", state, f"exotel:{message_id}")
        return ShopDelivery(
            Delivery(
                provider="exotel",
                delivery_id=f"in:{message_id}",
                event_id=None,
                topic="InboundMessage",
                triggered_at=None,
                job_kind="test.noop",
                job_payload={},
                shop_id=order.shop_id,
                consent=consent,
            ),
            order.shop_id,
        )

    stored = await store.write([delivery("a", OPTED_OUT), delivery("b", OPTED_IN)], clock.now())
    assert len(stored) == 2
    clock.advance(timedelta(seconds=1))
    # "c" is new, "b" a repeat: the repeat, though last, changes nothing.
    stored = await store.write([delivery("c", OPTED_OUT), delivery("b", OPTED_IN)], clock.now())
    assert stored == {("exotel", "in:c")}
    async with res.db.sessions() as session:
        [row] = await session.scalars(select(LineConsent))
    assert (row.state, row.reference, row.updated_at) == (OPTED_OUT, "exotel:c", clock.now())


async def test_a_message_leased_by_a_worker_when_stop_arrives_is_not_sent(
    res, server, fakes, order, clock
):
    message_id = await send(res, order, key="leased")
    claimed = [job for job in await res.queue.claim("worker-1", 10) if job.kind == SEND_JOB]
    assert len(claimed) == 1
    await texted(fakes, server, "STOP")  # accepted while the worker holds the send

    async def never_refused(account_id: int, reason: str) -> None:
        raise AssertionError(f"account {account_id} refused: {reason}")

    sender = MessageSender(res.db, clock, res.limiter, res.router(), res.keys, never_refused)
    await sender.handle(claimed[0])
    assert fakes["twilio"].messages == []
    row = await message(res, message_id)
    assert (row.status, row.error_code) == ("suppressed", "OPTED_OUT")


async def test_stop_on_the_platform_number_suppresses_every_shop_sending_from_it(
    res, server, worker, fakes, order, clock
):
    other = await second_shop(res)
    await texted(fakes, server, "STOP")
    await worker.run_until_idle()
    clock.advance(timedelta(seconds=1))
    confirmations = len(fakes["twilio"].messages)
    async with res.db.transaction() as session:
        queued = await _queue(res, session, other, "second-shop")
    await worker.run_until_idle()
    assert len(fakes["twilio"].messages) == confirmations
    row = await message(res, queued)
    assert (row.shop_id, row.status) == (other, "suppressed")
    async with res.db.sessions() as session:  # no consent of its own says so
        assert await session.scalar(select(Consent).where(Consent.shop_id == other)) is None


async def test_stop_under_a_shops_token_binds_that_shop_only(
    res, server, worker, fakes, order, clock
):
    other = await second_shop(res)
    url = str(
        server.make_url(
            f"/webhooks/exotel/{shop_token(res.settings.secret_key(), order.shop_id)}/sms"
        )
    )
    status, _ = await fakes["exotel"].inbound_sms(
        url, from_phone=CUSTOMER, to="08047112345", body="STOP"
    )
    assert status == 200
    assert await lines(res) == [(f"shop:{order.shop_id}", CUSTOMER, "sms", OPTED_OUT)]
    assert await gate(res, order.shop_id)
    assert not await gate(res, other)


async def _queue(res, session, shop_id: int, key: str) -> int:
    queued = await queue_message(
        session,
        res.queue,
        res.clock.now(),
        shop_id=shop_id,
        channel="sms",
        to=CUSTOMER,
        idempotency_key=key,
        body="Your order is on its way",
    )
    return queued.id


async def test_a_stops_late_job_does_not_undo_the_start_accepted_after_it(
    res, server, worker, fakes, order, clock
):
    await wrote_from(res, order, "twilio", SMS_FROM)
    await texted(fakes, server, "STOP")
    # A worker takes the STOP's job and dies with it: it runs again only once its lease ends.
    [stop_job] = await res.queue.claim("lost-worker", 1)
    assert stop_job.kind == EVENT_JOB
    clock.advance(timedelta(seconds=1))
    await texted(fakes, server, "START")
    await worker.run_until_idle()
    clock.advance(timedelta(seconds=res.queue.settings.lease_seconds + 1))
    await res.queue.requeue_expired()
    await worker.run_until_idle()
    async with res.db.sessions() as session:
        assert (await session.get(Job, stop_job.id)).status == "done"
    # The STOP dates from its acceptance, before the START: the customer stays opted in.
    assert not await gate(res, order.shop_id)
    async with res.db.sessions() as session:
        consent = await session.scalar(select(Consent).where(Consent.shop_id == order.shop_id))
    assert consent.state == OPTED_IN
