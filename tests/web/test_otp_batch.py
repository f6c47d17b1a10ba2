"""OTP verifications started as a batch (a flood of orders), on SQLite and PostgreSQL: each
order's OTP SMS is queued once with its send job, the batch's consents read together; a
customer who opted out of SMS at the shop gets no code, and the rest of the batch theirs."""

from __future__ import annotations

from sqlalchemy import select

from flows.channels.messaging import SEND_JOB
from flows.verification.customer_keys import CustomerKeys
from flows.verification.runtime import VERIFY_ORDER_JOB, Verifier
from settings import Settings
from storage.crypto import SecretBox
from storage.jobs import ClaimedJob
from storage.models import Activity, Consent, Job, Message, Order, Shop
from tests.conftest import SECURITY
from tests.web.test_verify_page import ITEMS, OTP_SETTINGS, SHOP

PHONES = ("+919876543210", "+919876543211", "+919876543212")
OPTED_OUT = PHONES[1]


async def test_a_batch_of_otp_starts_queues_each_code_once_and_none_to_an_opt_out(
    db, clock, queue, database_url
):
    settings = Settings(database={"url": database_url}, security=SECURITY)
    verifier = Verifier(
        db,
        clock,
        queue,
        SecretBox(settings.secret_key()),
        CustomerKeys(settings.secret_key()),
        settings.server.public_url,
    )
    now = clock.now()
    async with db.transaction() as session:
        shop = Shop(
            domain=SHOP,
            name="Chai House",
            currency="INR",
            country="IN",
            timezone="Asia/Kolkata",
            status="installed",
            settings=OTP_SETTINGS,
            created_at=now,
            updated_at=now,
        )
        session.add(shop)
        await session.flush()
        session.add(
            Consent(
                shop_id=shop.id,
                phone=OPTED_OUT,
                channel="sms",
                state="opted_out",
                source="keyword",
                updated_at=now,
            )
        )
        orders = [
            Order(
                shop_id=shop.id,
                shopify_order_id=str(5512345671000 + n),
                name=f"#{1001 + n}",
                number=1001 + n,
                phone=phone,
                total_amount="1250.00",
                currency="INR",
                payment_method="cod",
                gateways=["Cash on Delivery (COD)"],
                financial_status="pending",
                city="Pune",
                items=ITEMS,
                placed_at=now,
                created_at=now,
                updated_at=now,
            )
            for n, phone in enumerate(PHONES)
        ]
        session.add_all(orders)
    jobs = [
        ClaimedJob(
            n,
            VERIFY_ORDER_JOB,
            {"shop_id": order.shop_id, "shopify_order_id": order.shopify_order_id},
            1,
            1,
            None,
            None,
            now,
            now,
        )
        for n, order in enumerate(orders)
    ]
    assert await verifier.handle_orders(jobs) == [None] * len(jobs)
    # The same batch again (a job run twice) queues nothing more.
    assert await verifier.handle_orders(jobs) == [None] * len(jobs)

    async with db.sessions() as session:
        messages = list(await session.scalars(select(Message).order_by(Message.id)))
        sends = list(await session.scalars(select(Job).where(Job.kind == SEND_JOB)))
        skipped = list(
            await session.scalars(
                select(Activity.order_id).where(Activity.kind == "method_skipped")
            )
        )
    assert sorted(m.to_phone for m in messages) == sorted(set(PHONES) - {OPTED_OUT})
    assert all(m.status == "queued" and m.channel == "sms" for m in messages)
    assert sorted(job.payload["message_id"] for job in sends) == [m.id for m in messages]
    assert all("otp" in job.payload["details"] for job in sends)
    assert skipped == [orders[1].id]
