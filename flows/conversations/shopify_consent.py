"""SMS consent kept the same here and in Shopify, both ways.

To Shopify: a consent change made here (a STOP or START keyword, a merchant's change through
the API) queues a durable job in the transaction that records it, keyed by what caused it, so
a repeated delivery queues nothing new. The job sets the customer's SMS marketing consent in
Shopify (`customerSmsMarketingConsentUpdate`), finding the customer by phone unless we hold
their Shopify id. A job whose change was overtaken by a later one does nothing: the later one
has its own job. No Shopify customer with that phone: the local consent stands alone. A
transient Shopify failure is retried by the job system; a refusal is recorded and not retried.

From Shopify: `customers/update` and the customer of an order payload carry the customer's
SMS marketing consent; it is recorded here with source "shopify" unless what we hold was
decided later (a stale payload never overrides a newer decision). A consent taken from
Shopify never queues a job: our own change's echo (the customers/update that follows our
mutation) finds the same state and changes nothing, so nothing goes back and forth.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.conversations.consent import OPTED_IN, OPTED_OUT, record
from flows.jobs import provider_failure
from providers.base import ProviderError
from providers.shopify.admin import ShopifyAdmin
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, Consent, Customer, Order
from storage.shops import installed_shop

_LOGGER = logging.getLogger(__name__)

SYNC_JOB = "consent.shopify"
# Shopify's SMS marketing states that decide something here. "not_subscribed" (never asked)
# and "pending" (a double opt-in not yet confirmed) do not withdraw an earlier consent, nor
# stop the order's own (transactional) messages; "redacted" consent is no consent.
FROM_SHOPIFY = {"subscribed": OPTED_IN, "unsubscribed": OPTED_OUT, "redacted": OPTED_OUT}


async def queue_consent_sync(
    session: AsyncSession,
    queue: JobQueue,
    now: datetime,
    shop_id: int,
    phone: str,
    state: str,
    reference: str,
) -> bool:
    """Queue setting `phone`'s SMS marketing consent in the shop's Shopify to `state`
    (OPTED_IN or OPTED_OUT), as recorded here; `reference` names the cause (the inbound
    message, the API request) and makes the job unique. False when it was queued before."""
    if state not in (OPTED_IN, OPTED_OUT):
        raise ValueError(f"unknown consent state {state!r}")
    job = NewJob(
        SYNC_JOB,
        {"shop_id": shop_id, "phone": phone, "state": state, "reference": reference},
        due_at=now,
        idempotency_key=f"{SYNC_JOB}:{shop_id}:{state}:{reference}",
        shop_id=shop_id,
    )
    return await queue.enqueue(session, job) == 1


async def from_shopify(
    session: AsyncSession,
    now: datetime,
    *,
    shop_id: int,
    phone: str,
    state: str | None,
    updated_at: datetime | None,
    reference: str = "",
) -> bool:
    """Record the SMS consent Shopify holds for `phone` (its `sms_marketing_consent.state`,
    decided at `updated_at`); True when ours changed. A state decided before ours, or at an
    unknown time while we hold one, changes nothing."""
    local = FROM_SHOPIFY.get((state or "").lower())
    if local is None:
        return False
    held = await session.scalar(
        select(Consent).where(
            Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == "sms"
        )
    )
    if held is not None and (updated_at is None or updated_at < held.updated_at):
        return False
    return await record(
        session,
        now,
        shop_id=shop_id,
        phone=phone,
        channel="sms",
        state=local,
        source="shopify",
        reference=reference,
    )


def shopify_time(value: Any) -> datetime | None:
    """A Shopify timestamp ("2026-01-15T10:30:00+05:30", "...Z"); None if absent or unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ConsentSync:
    """The SYNC_JOB handler."""

    def __init__(self, db: Database, clock: Clock, box: SecretBox, shopify: ShopifyAdmin) -> None:
        self.db = db
        self.clock = clock
        self.box = box
        self.shopify = shopify

    async def handle(self, job: ClaimedJob) -> None:
        """Set the customer's SMS marketing consent in Shopify to what we hold."""
        payload = job.payload
        shop_id, phone, state = payload["shop_id"], payload["phone"], payload["state"]
        shop, token = await installed_shop(self.db, self.box, shop_id)
        if shop is None or not token:
            _LOGGER.info("consent job %s: shop %s is uninstalled or has no token", job.id, shop_id)
            return
        async with self.db.sessions() as session:
            held = await session.scalar(
                select(Consent).where(
                    Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == "sms"
                )
            )
            customer = await session.scalar(
                select(Customer).where(Customer.shop_id == shop_id, Customer.phone == phone)
            )
        if held is None or held.state != state:
            _LOGGER.info("consent job %s: overtaken by a later change", job.id)
            return
        shopify_id = customer.shopify_customer_id if customer is not None else None
        result, failure = "updated", None
        try:
            if not shopify_id:
                found = await self.shopify.find_customer_by_phone(shop.domain, token, phone)
                shopify_id = str(found["id"]) if found and found.get("id") else None
            if shopify_id is None:
                result = "no_customer"
            else:
                await self.shopify.update_sms_consent(
                    shop.domain,
                    token,
                    shopify_id,
                    subscribed=state == OPTED_IN,
                    updated_at=held.updated_at,
                )
        except ProviderError as exc:
            if exc.retryable and job.attempts < job.max_attempts:
                raise provider_failure(exc) from exc
            result, failure = "failed", exc
        await self._record(job, customer, shopify_id, result, failure)
        if failure is not None and failure.retryable:
            raise provider_failure(failure)

    async def _record(
        self,
        job: ClaimedJob,
        customer: Customer | None,
        shopify_id: str | None,
        result: str,
        failure: ProviderError | None,
    ) -> None:
        """The outcome on the timeline of the customer's latest order (the shop's, when we
        know no order of theirs), and the Shopify id found on our customer."""
        payload, now = job.payload, self.clock.now()
        detail: dict[str, Any] = {
            "channel": "sms",
            "state": payload["state"],
            "result": result,
            "reference": payload["reference"],
        }
        if failure is not None:
            _LOGGER.warning("consent job %s: Shopify refused: %s", job.id, failure)
            detail |= {"code": failure.code, "error": str(failure)[:500]}
        elif result == "no_customer":
            _LOGGER.info("consent job %s: no Shopify customer has this phone", job.id)
        async with self.db.transaction() as session:
            order_id = None
            if customer is not None:
                order_id = await session.scalar(
                    select(Order.id)
                    .where(Order.shop_id == customer.shop_id, Order.customer_id == customer.id)
                    .order_by(Order.placed_at.desc(), Order.id.desc())
                    .limit(1)
                )
                if shopify_id and not customer.shopify_customer_id:
                    stored = await session.get(Customer, customer.id)
                    if stored is not None:
                        stored.shopify_customer_id = shopify_id
            session.add(
                Activity(
                    shop_id=payload["shop_id"],
                    order_id=order_id,
                    kind="shopify_consent",
                    mode="system",
                    detail=detail,
                    created_at=now,
                )
            )
