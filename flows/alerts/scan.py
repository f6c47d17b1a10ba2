"""The alerts' outbox reader: a job every few seconds reads what was committed since the
last one and queues one delivery job per push.

The events are rows their own transactions wrote: order and alert activities, dead jobs of
a shop, customer messages filed in a thread. Reading them back (rather than each writer
queueing its alerts) keeps every writer unaware of chats, and loses nothing: a row is
committed with its event or not at all. Each scan re-reads a margin before its window, for
rows committed a little after their time; their pushes are keyed, so none goes twice. One
scan per interval, however many processes start: each is keyed by its slot.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.alerts.decide import (
    CALLBACK,
    CUSTOMER_MESSAGE,
    DEAD_JOB,
    NEW_ORDER,
    REJECTED,
    SUMMARY,
    TEMPLATE_UNUSABLE,
    Fact,
    Push,
    decide,
    summary_day,
)
from flows.orders import reports
from flows.shops import config
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, BotLink, Job, Message, Order, Shop

_LOGGER = logging.getLogger(__name__)

SCAN_JOB = "alerts.scan"
DELIVER_JOB = "alerts.deliver"
CALL_JOB = "alerts.call"
# Jobs of the alerts themselves: one of them dying is not alerted (it could not be either).
ALERT_JOBS = (SCAN_JOB, DELIVER_JOB, CALL_JOB)
INTERVAL = timedelta(seconds=10)
MARGIN = timedelta(minutes=2)
# At start-up: what happened while no worker ran is alerted up to this far back.
CATCH_UP = timedelta(hours=1)
DAY = timedelta(days=1)


def scan_job(now: datetime, since: datetime, *, next_slot: bool = True) -> NewJob:
    """The scan of the next interval (due at its start), or of the current one, due now
    (`next_slot=False`, at start-up), reading what was committed after `since`."""
    seconds = INTERVAL.total_seconds()
    slot = int(now.timestamp() // seconds) + int(next_slot)
    due = datetime.fromtimestamp(slot * seconds, now.tzinfo)
    return NewJob(
        SCAN_JOB,
        {"since": since.isoformat()},
        due_at=max(due, now),
        idempotency_key=f"{SCAN_JOB}:{slot}",
    )


def first_scan(now: datetime) -> NewJob:
    return scan_job(now, now - CATCH_UP, next_slot=False)


def deliver_job(push: Push, shop_id: int) -> NewJob:
    action = push.action
    return NewJob(
        DELIVER_JOB,
        {
            "chat_id": push.chat_id,
            "text": push.text,
            "action": None
            if action is None
            else {"name": action.name, "ref": action.ref, "label": action.label},
        },
        idempotency_key=push.key,
        shop_id=shop_id,
    )


class AlertScanner:
    """The SCAN_JOB handler."""

    def __init__(self, db: Database, clock: Clock, queue: JobQueue) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue

    async def handle(self, job: ClaimedJob) -> None:
        now = self.clock.now()
        since = datetime.fromisoformat(job.payload["since"]) - MARGIN
        async with self.db.sessions() as session:
            chats = await _chats(session)
            shops = await _shops(session, list(chats))
            facts = await _facts(session, list(chats), since, now) if chats else []
            summaries = await _summaries_due(session, shops, chats, now)
        for shop, day in summaries:
            facts.append(await self._summary(shop, day, now))
        jobs = [
            deliver_job(push, fact.shop_id)
            for fact in facts
            if fact.shop_id in shops
            for push in decide(
                fact, chats[fact.shop_id], config.stored(shops[fact.shop_id]).alerts
            )
        ]
        async with self.db.transaction() as session:
            added = await self.queue.enqueue(session, *jobs)
            await self.queue.enqueue(session, scan_job(now, now))
        if added:
            _LOGGER.info("%d alerts queued for linked chats", added)

    async def _summary(self, shop: Shop, day: str, now: datetime) -> Fact:
        """The day's summary: the same totals as the orders report of the last 24 hours."""
        report = await reports.orders(
            self.db, shop.id, reports.Filters(since=now - DAY, until=now, limit=1)
        )
        until = now.astimezone(ZoneInfo(config.shop_zone(shop))).strftime("%Y-%m-%d %H:%M")
        return Fact(
            SUMMARY,
            shop.id,
            summary_ref(shop.id, day),
            {"shop": shop.name, "until": until, "totals": report.totals},
        )


async def _summaries_due(
    session: AsyncSession, shops: dict[int, Shop], chats: dict[int, list[int]], now: datetime
) -> list[tuple[Shop, str]]:
    """The shops whose summary falls due in this hour and is not queued yet (every scan of
    the hour asks; the report is read once)."""
    due: dict[str, tuple[Shop, str]] = {}
    for shop in shops.values():
        day = summary_day(now, config.shop_zone(shop), config.stored(shop).alerts)
        if day is not None:
            due[f"alert:{summary_ref(shop.id, day)}:{chats[shop.id][0]}"] = (shop, day)
    if not due:
        return []
    queued = set(
        await session.scalars(select(Job.idempotency_key).where(Job.idempotency_key.in_(due)))
    )
    return [found for key, found in due.items() if key not in queued]


def summary_ref(shop_id: int, day: str) -> str:
    return f"summary:{shop_id}:{day}"


async def _chats(session: AsyncSession) -> dict[int, list[int]]:
    """The chats taking alerts, by shop."""
    rows = await session.execute(
        select(BotLink.shop_id, BotLink.chat_id)
        .where(BotLink.alerts.is_(True), BotLink.blocked_at.is_(None))
        .order_by(BotLink.id)
    )
    found: dict[int, list[int]] = defaultdict(list)
    for shop_id, chat_id in rows:
        found[shop_id].append(chat_id)
    return found


async def _shops(session: AsyncSession, ids: list[int]) -> dict[int, Shop]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Shop).where(Shop.id.in_(ids), Shop.status != "uninstalled")
    )
    return {shop.id: shop for shop in rows}


async def _facts(
    session: AsyncSession, shop_ids: list[int], since: datetime, until: datetime
) -> list[Fact]:
    facts: list[Fact] = []
    activities = await session.execute(
        select(Activity, Order)
        .outerjoin(Order, Order.id == Activity.order_id)
        .where(
            Activity.shop_id.in_(shop_ids),
            Activity.created_at > since,
            Activity.created_at <= until,
            Activity.kind.in_(
                ("order_received", "merchant_alert", "account_rejected", TEMPLATE_UNUSABLE)
            ),
        )
        .order_by(Activity.id)
    )
    for activity, order in activities:
        ref, detail = f"activity:{activity.id}", activity.detail or {}
        if activity.kind == "order_received" and order is not None:
            facts.append(
                Fact(
                    NEW_ORDER,
                    activity.shop_id,
                    ref,
                    {
                        "order": order.name,
                        "amount": order.total_amount,
                        "currency": order.currency,
                        "payment_method": order.payment_method,
                        "phone": order.phone or "no phone",
                    },
                )
            )
        elif activity.kind == "merchant_alert" and detail.get("alert") == CALLBACK:
            facts.append(
                Fact(
                    CALLBACK,
                    activity.shop_id,
                    ref,
                    {
                        "order": detail.get("order", ""),
                        "phone": detail.get("phone", ""),
                        "mode": activity.mode,
                        "activity_id": activity.id,
                    },
                )
            )
        elif activity.kind == TEMPLATE_UNUSABLE:
            facts.append(
                Fact(
                    TEMPLATE_UNUSABLE,
                    activity.shop_id,
                    ref,
                    {
                        "template_id": detail.get("template_id", ""),
                        "reason": detail.get("reason", ""),
                        "event": str(detail.get("event", "")).replace("_", " "),
                        "order": order.name if order is not None else "",
                        "fallback": detail.get("fallback", ""),
                    },
                )
            )
        elif activity.kind == "account_rejected":
            facts.append(
                Fact(
                    REJECTED,
                    activity.shop_id,
                    ref,
                    {
                        "provider": activity.mode,
                        "owner": detail.get("owner", ""),
                        "reason": detail.get("reason", ""),
                    },
                )
            )
    dead = await session.scalars(
        select(Job)
        .where(
            Job.status == "dead",
            Job.shop_id.in_(shop_ids),
            Job.finished_at > since,
            Job.finished_at <= until,
            Job.kind.not_in(ALERT_JOBS),
        )
        .order_by(Job.id)
    )
    facts += [
        Fact(
            DEAD_JOB,
            job.shop_id or 0,
            f"job:{job.id}",
            {
                "job_kind": job.kind,
                "job_id": job.id,
                "attempts": job.attempts,
                "error": job.last_error or "",
            },
        )
        for job in dead
    ]
    messages = await session.scalars(
        select(Message)
        .where(
            Message.shop_id.in_(shop_ids),
            Message.direction == "in",
            Message.thread_id.is_not(None),
            Message.created_at > since,
            Message.created_at <= until,
        )
        .order_by(Message.id)
    )
    facts += [
        Fact(
            CUSTOMER_MESSAGE,
            message.shop_id,
            f"message:{message.id}",
            {
                "phone": message.from_phone,
                "channel": message.channel,
                "body": message.body,
                "thread_id": message.thread_id,
            },
        )
        for message in messages
    ]
    return facts
