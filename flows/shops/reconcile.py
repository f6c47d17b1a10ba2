"""Reconciliation: pull orders updated since the last one seen, so a webhook outage loses
nothing. Orders found here that no webhook delivered are counted, and the merchant is alerted
long before Shopify would drop the subscription (after 8 failed deliveries).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from clock import Clock
from flows.jobs import provider_failure
from flows.shops.shopify_events import OrderBook, apply_order
from providers.base import ProviderError
from providers.shopify.admin import ShopifyAdmin
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, Order, Shop
from storage.shops import installed_shop

_LOGGER = logging.getLogger(__name__)

RECONCILE_JOB = "shopify.reconcile"
INTERVAL = timedelta(minutes=15)
# Shopify's updated_at and ours are different clocks: look back a little further.
OVERLAP = timedelta(minutes=5)
FIRST_LOOKBACK = timedelta(days=1)
# A webhook for a change this recent may still be on its way: leave it to the next run.
GRACE = timedelta(minutes=2)
ALERT_AFTER_MISSES = 3


def next_reconcile(shop_id: int, now: datetime) -> NewJob:
    """The shop's next run; one job per shop per interval, however often it is asked for."""
    slot = int(now.timestamp() // INTERVAL.total_seconds()) + 1
    due = datetime.fromtimestamp(slot * INTERVAL.total_seconds(), now.tzinfo)
    return NewJob(
        RECONCILE_JOB,
        {"shop_id": shop_id},
        due_at=due,
        idempotency_key=f"{RECONCILE_JOB}:{shop_id}:{slot}",
        shop_id=shop_id,
    )


def _updated_at(payload: dict) -> datetime:
    try:
        return datetime.fromisoformat(str(payload.get("updated_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


class Reconciler:
    """The RECONCILE_JOB handler."""

    def __init__(
        self, db: Database, queue: JobQueue, box: SecretBox, clock: Clock, admin: ShopifyAdmin
    ) -> None:
        self.db = db
        self.queue = queue
        self.box = box
        self.clock = clock
        self.admin = admin

    async def handle(self, job: ClaimedJob) -> None:
        shop, token = await installed_shop(self.db, self.box, job.payload["shop_id"])
        if shop is None or not token:
            return
        now = self.clock.now()
        since = (shop.orders_synced_at or now - FIRST_LOOKBACK) - OVERLAP
        # The first run backfills: what it finds was not missed by webhooks.
        counting = shop.orders_synced_at is not None
        cursor: str | None = None
        missed = 0
        while True:
            try:
                page, cursor = await self.admin.orders_updated_since(
                    shop.domain, token, since, cursor
                )
            except ProviderError as exc:
                raise provider_failure(exc) from exc
            for payload in page:
                if _updated_at(payload) > now - GRACE:
                    continue
                found = await self._apply(shop.id, payload)
                missed += found if counting else 0
            if cursor is None:
                break
        await self._finish(shop.id, now - GRACE, missed)

    async def _apply(self, shop_id: int, payload: dict) -> int:
        """Feed one order through the webhook path; 1 if no webhook had brought it."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop_id)
            held = await session.scalar(
                select(Order.shopify_updated_at).where(
                    Order.shop_id == shop_id, Order.shopify_order_id == str(payload.get("id"))
                )
            )
            book = OrderBook(session)
            order = await apply_order(session, shop, payload, now, "reconcile", book=book)
            await self.queue.enqueue(session, *book.verification_jobs)
            if order is None:
                return 0
            updated = order.shopify_updated_at
            return int(held is None or (updated is not None and held < updated))

    async def _finish(self, shop_id: int, synced_to: datetime, missed: int) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop_id)
            if shop is None:
                return
            shop.orders_synced_at = synced_to
            if missed:
                shop.missed_webhooks += missed
                _LOGGER.warning(
                    "%d orders of %s arrived only by reconciliation", missed, shop.domain
                )
            if shop.missed_webhooks >= ALERT_AFTER_MISSES:
                session.add(
                    Activity(
                        shop_id=shop_id,
                        kind="merchant_alert",
                        mode="reconcile",
                        detail={
                            "alert": "webhooks_failing",
                            "missed_orders": shop.missed_webhooks,
                            "message": "Shopify webhooks are not reaching ordertalk; orders are "
                            "being recovered by polling. Check the public URL and the service.",
                        },
                        created_at=now,
                    )
                )
                shop.missed_webhooks = 0
            await self.queue.enqueue(session, next_reconcile(shop_id, now))
