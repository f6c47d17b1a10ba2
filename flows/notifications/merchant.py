"""SMS to the merchant's own number (seed 004's "Merchant: New order"): a new order and a
customer's callback request, each texted once per order through the shop's SMS channel, when
the merchant gave the number and keeps the message on.

The event's source queues the job in its own transaction (the order's webhook, the
verification that took the callback request). Customers' consent and quiet hours do not
apply: the number is the merchant's, who asked for these; a callback request is wanted at
once. The send gate still honours a STOP sent from that number.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from clock import Clock
from flows.channels.messaging import queue_message
from flows.notifications.events import JourneyEvent
from flows.notifications.job import MODE, find_order, message_key, token_values
from flows.notifications.templates import render
from flows.shops import config as shop_config
from flows.shops.settings import Notifications
from providers.sms import measure
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, Customer, Message, Shop

_LOGGER = logging.getLogger(__name__)

MERCHANT_JOB = "notification.merchant"
NEW_ORDER, CALLBACK_REQUESTED = "new_order", "callback_requested"
SENT_KIND = "merchant_sms"


def merchant_jobs(
    settings: Notifications, shop_id: int, alert: str, order_ref: str
) -> list[NewJob]:
    """The job texting the merchant about `alert` of the order `order_ref` (its Shopify id),
    when the shop texts that alert; none otherwise."""
    if settings.merchant_sms(alert) is None:
        return []
    return [
        NewJob(
            MERCHANT_JOB,
            {"shop_id": shop_id, "alert": alert, "order": order_ref},
            idempotency_key=f"{MERCHANT_JOB}:{shop_id}:{order_ref}:{alert}",
            shop_id=shop_id,
        )
    ]


def merchant_event(alert: str) -> str:
    """The event a merchant's SMS is billed and keyed under."""
    return f"merchant_{alert}"


class MerchantTexts:
    """The MERCHANT_JOB handler."""

    def __init__(self, db: Database, clock: Clock, queue: JobQueue) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue

    async def handle(self, job: ClaimedJob) -> None:
        alert, ref = job.payload["alert"], job.payload["order"]
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, job.payload["shop_id"])
            if shop is None or shop.status == "uninstalled":
                return
            settings = shop_config.load(shop).notifications
            notice = settings.merchant_sms(alert)
            order = await find_order(session, shop.id, ref, lock=False)
            if notice is None or order is None:
                _LOGGER.info("merchant SMS %s of order %s: nothing to send", alert, ref)
                return
            customer = (
                await session.get(Customer, order.customer_id) if order.customer_id else None
            )
            values = token_values(shop, order, customer, JourneyEvent(alert, ref, "merchant"))
            event = merchant_event(alert)
            key = message_key(order.id, event, "sms")
            if await session.scalar(select(Message.id).where(Message.idempotency_key == key)):
                return  # this job ran already (its worker died before marking it done)
            message = await queue_message(
                session,
                self.queue,
                now,
                shop_id=shop.id,
                channel="sms",
                to=settings.merchant.phone,
                idempotency_key=key,
                body=render(notice.text, values),
                sender=settings.sms_sender_id,
                order_id=order.id,
                details={
                    "mode": MODE,
                    "dlt_entity_id": settings.dlt_entity_id,
                    "dlt_template_id": notice.dlt_template_id,
                },
            )
            message.credits = measure(message.body).segments
            session.add(
                Activity(
                    shop_id=shop.id,
                    order_id=order.id,
                    kind=SENT_KIND,
                    mode=MODE,
                    detail={"event": event, "channel": "sms", "message_id": message.id},
                    created_at=now,
                )
            )
