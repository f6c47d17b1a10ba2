"""Webhook inbox with group commit: many requests, one transaction per batch.

A request hands in its delivery (receipt + job) and waits; one writer task takes everything
waiting, resolves the shops, inserts the receipts (a known delivery or event is a duplicate),
enqueues a job per new delivery and commits, then answers every request of the batch. So a
webhook is acknowledged only once it is durable, and the cost of a commit is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select

from clock import Clock
from storage.db import Database
from storage.jobs import JobQueue, NewJob
from storage.models import Shop, WebhookReceipt

_LOGGER = logging.getLogger(__name__)
receipts = WebhookReceipt.__table__
# How long a shop lookup is trusted; a batch that fails forgets them all.
SHOP_CACHE_SECONDS = 5.0


class Accepted(StrEnum):
    NEW = "accepted"
    DUPLICATE = "duplicate"
    UNKNOWN_SHOP = "unknown_shop"


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str
    event_id: str | None
    topic: str
    triggered_at: datetime | None
    job_kind: str
    job_payload: dict[str, Any]
    # The shop, by domain or by id; neither when the provider's account is the platform's.
    shop_domain: str | None = None
    shop_id: int | None = None
    # Accept the delivery even if no known shop is named (privacy topics, platform accounts).
    allow_unknown_shop: bool = False


@dataclass
class _Pending:
    delivery: Delivery
    answer: asyncio.Future[Accepted]


class Inbox:
    def __init__(self, db: Database, queue: JobQueue, clock: Clock, max_batch: int = 500) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock
        self.max_batch = max_batch
        # SQLite has one writer anyway; PostgreSQL commits several batches at once.
        self.writers = 1 if db.dialect == "sqlite" else 3
        self._waiting: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._shops: dict[tuple[str, Any], tuple[int | None, float]] = {}
        # Built once: a statement's construction costs more than its (cached) compilation.
        self._insert_receipts = (
            db.insert(receipts)
            .on_conflict_do_nothing()
            .returning(receipts.c.provider, receipts.c.delivery_id)
        )

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._write_forever(), name=f"inbox-writer-{n}")
                for n in range(self.writers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def accept(self, delivery: Delivery) -> Accepted:
        """Store the delivery durably (or find it already stored); raises if the DB fails."""
        answer: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait(_Pending(delivery, answer))  # unbounded: never waits
        return await answer

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._waiting.get()]
            while len(batch) < self.max_batch and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            try:
                results = await self._write(batch)
            except Exception as exc:
                _LOGGER.warning("inbox: batch of %d not stored: %s", len(batch), exc)
                self._shops.clear()  # a shop may have gone: ask again next time
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(exc)
                continue
            for pending, result in zip(batch, results, strict=True):
                if not pending.answer.done():
                    pending.answer.set_result(result)

    async def _write(self, batch: list[_Pending]) -> list[Accepted]:
        now = self.clock.now()
        deliveries = [p.delivery for p in batch]
        async with self.db.transaction(priority=True) as session:
            shops = await self._resolve_shops(session, deliveries)
            rows, keys = [], set()
            for d, shop_id in zip(deliveries, shops, strict=True):
                key = (d.provider, d.delivery_id)
                if key in keys or (shop_id is None and not d.allow_unknown_shop):
                    continue
                keys.add(key)
                rows.append(
                    {
                        "provider": d.provider,
                        "shop_id": shop_id,
                        "delivery_id": d.delivery_id,
                        "event_id": d.event_id,
                        "topic": d.topic,
                        "triggered_at": d.triggered_at,
                        "received_at": now,
                    }
                )
            stored: set[tuple[str, str]] = set()
            if rows:
                found = await session.execute(self._insert_receipts, rows)
                stored = {(p, d) for p, d in found}
            jobs = []
            results = []
            for d, shop_id in zip(deliveries, shops, strict=True):
                key = (d.provider, d.delivery_id)
                if shop_id is None and not d.allow_unknown_shop:
                    results.append(Accepted.UNKNOWN_SHOP)
                elif key in stored:
                    stored.discard(key)  # a second copy in this batch is a duplicate
                    jobs.append(
                        NewJob(
                            d.job_kind,
                            {**d.job_payload, "shop_id": shop_id},
                            idempotency_key=f"{d.provider}:{d.delivery_id}",
                            shop_id=shop_id,
                        )
                    )
                    results.append(Accepted.NEW)
                else:
                    results.append(Accepted.DUPLICATE)
            await self.queue.enqueue(session, *jobs)
        return results

    async def _resolve_shops(self, session: Any, deliveries: list[Delivery]) -> list[int | None]:
        """The id of each delivery's shop, None where it names none or an unknown one.

        Answers are kept a few seconds, so a busy intake does not ask once per batch.
        """
        now = asyncio.get_running_loop().time()
        keys = [_shop_key(d) for d in deliveries]
        stale = {key for key in keys if key and self._shops.get(key, (None, 0.0))[1] <= now}
        if stale:
            domains = {value for kind, value in stale if kind == "domain"}
            ids = {value for kind, value in stale if kind == "id"}
            found = await session.execute(
                select(Shop.domain, Shop.id).where(or_(Shop.domain.in_(domains), Shop.id.in_(ids)))
            )
            expires = now + SHOP_CACHE_SECONDS
            for key in stale:
                # Unknown shops are not remembered: one may be created any moment.
                self._shops.pop(key, None)
            for domain, shop_id in found:
                self._shops[("domain", domain)] = (shop_id, expires)
                self._shops[("id", shop_id)] = (shop_id, expires)
        return [self._shops.get(key, (None, 0.0))[0] if key else None for key in keys]


def _shop_key(delivery: Delivery) -> tuple[str, Any] | None:
    if delivery.shop_domain:
        return ("domain", delivery.shop_domain)
    if delivery.shop_id is not None:
        return ("id", delivery.shop_id)
    return None
