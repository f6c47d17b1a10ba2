"""The messaging fixtures (the real app and worker, every provider's fake on loopback, a shop
"Demo" with SMS by Twilio and WhatsApp by Gupshup, both the platform's accounts) for the
conversation tests, and helpers to add shops, start verifications and call the admin API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from flows.verification.runtime import verification_job
from storage.models import Customer, Job, Order, Shop
from storage.shops import replace_api_key
from tests.web import test_messaging

fakes, port, res = test_messaging.fakes, test_messaging.port, test_messaging.res
server, settings, worker = test_messaging.server, test_messaging.settings, test_messaging.worker
order = test_messaging.order

WHATSAPP_FIRST = {"verification": {"type": "whatsapp", "for_orders": "all"}}


async def add_shop(res, name: str, phone: str, number: int, document: dict[str, Any]) -> Order:
    """An installed shop with WhatsApp and SMS by the platform's accounts, and an order of
    `phone` placed now."""
    now = res.clock.now()
    async with res.db.transaction() as session:
        shop = Shop(
            domain=f"{name.lower()}.myshopify.com",
            name=name,
            status="installed",
            settings=document,
            created_at=now,
            updated_at=now,
        )
        session.add(shop)
        await session.flush()
        customer = Customer(shop_id=shop.id, phone=phone, name="Asha", created_at=now)
        session.add(customer)
        await session.flush()
        row = Order(
            shop_id=shop.id,
            customer_id=customer.id,
            shopify_order_id=str(number),
            name=f"#{number}",
            number=number,
            phone=phone,
            total_amount="999.00",
            currency="INR",
            payment_method="cod",
            placed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    desk = res.account_desk()
    for provider in ("twilio", "gupshup"):
        await desk.connect(row.shop_id, {"provider": provider, "platform": True})
    # Installed (connecting an account refreshed the status: it has no Shopify token).
    await configure(res, row.shop_id, document)
    return row


async def configure(res, shop_id: int, document: dict[str, Any]) -> None:
    """The shop's settings document, and the shop installed."""
    async with res.db.transaction() as session:
        shop = await session.get(Shop, shop_id)
        shop.settings = document
        shop.status = "installed"


async def verify(res, worker, row: Order) -> None:
    """Start the order's verification, as its orders/create webhook does, and send its
    first message."""
    async with res.db.transaction() as session:
        await res.queue.enqueue(session, verification_job(row, True))
    await settle(res, worker)


async def settle(res, worker) -> None:
    """Run the worker until nothing is due within a few seconds (rate limits), moving the
    clock to each deferred job."""
    while True:
        await worker.run_until_idle()
        async with res.db.sessions() as session:
            due = await session.scalar(select(func.min(Job.due_at)).where(Job.status == "queued"))
        now = res.clock.now()
        if due is None or due > now + timedelta(seconds=5):
            return
        res.clock.advance(max(due - now, timedelta(seconds=0)) + timedelta(milliseconds=1))


async def api_key(res, shop_id: int) -> dict[str, str]:
    async with res.db.transaction() as session:
        key = replace_api_key(await session.get(Shop, shop_id))
    return {"Authorization": f"Bearer {key}"}


async def status(res, row: Order) -> str:
    async with res.db.sessions() as session:
        return (await session.get(Order, row.id)).verification_status
