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
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select

from clock import Clock
from storage.db import Database
from storage.inbox_store import BatchStore, Delivery, ShopDelivery
from storage.jobs import JobQueue
from storage.models import Shop

_LOGGER = logging.getLogger(__name__)
# How long a shop lookup is trusted; a batch that fails forgets them all.
SHOP_CACHE_SECONDS = 5.0


class Accepted(StrEnum):
    NEW = "accepted"
    DUPLICATE = "duplicate"
    UNKNOWN_SHOP = "unknown_shop"


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
        self._store = BatchStore(db, queue.settings.max_attempts)

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
            self.queue.pace.foreground()
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
        shops = await self._resolve_shops(deliveries)
        # Deliveries for a shop we know, or allowed without one; None for the others.
        accepted = [
            ShopDelivery(d, shop_id) if shop_id is not None or d.allow_unknown_shop else None
            for d, shop_id in zip(deliveries, shops, strict=True)
        ]
        rows = {a.delivery.key: a for a in accepted if a is not None}
        stored = await self._store.write(list(rows.values()), now)
        if stored:
            await self.db.wakeup.announce()
        results = []
        for d, a in zip(deliveries, accepted, strict=True):
            if a is None:
                results.append(Accepted.UNKNOWN_SHOP)
            elif d.key in stored:
                stored.discard(d.key)  # a second copy in this batch is a duplicate
                results.append(Accepted.NEW)
            else:
                results.append(Accepted.DUPLICATE)
        return results

    async def _resolve_shops(self, deliveries: list[Delivery]) -> list[int | None]:
        """The id of each delivery's shop, None where it names none or an unknown one.

        Answers are kept a few seconds, so a busy intake does not ask once per batch.
        """
        now = asyncio.get_running_loop().time()
        keys = [_shop_key(d) for d in deliveries]
        stale = {key for key in keys if key and self._shops.get(key, (None, 0.0))[1] <= now}
        if stale:
            domains = {value for kind, value in stale if kind == "domain"}
            ids = {value for kind, value in stale if kind == "id"}
            async with self.db.transaction(priority=True) as session:
                found = (
                    await session.execute(
                        select(Shop.domain, Shop.id).where(
                            or_(Shop.domain.in_(domains), Shop.id.in_(ids))
                        )
                    )
                ).all()
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
