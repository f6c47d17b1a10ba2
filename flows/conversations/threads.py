"""The merchant's threads: one per shop, customer phone and channel, holding the customer's
messages no flow took (and why a flow handed them over) and the merchant's answers.

A customer's message filed here makes its thread `unanswered`; the merchant's answer goes
back on the thread's channel through the account that carries the channel for the shop (the
one the customer wrote to), as any message does (the send gate included), and makes it
`answered`. Every read and write names its shop: another shop's thread is not found.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from flows.channels.messaging import VIA, queue_message
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import Message, Thread

UNANSWERED, ANSWERED = "unanswered", "answered"
STATUSES = (UNANSWERED, ANSWERED)
MAX_REPLY = 1600
LIST_LIMIT = 200


async def file(session: AsyncSession, now: datetime, message: Message, reason: str = "") -> Thread:
    """Put the customer's inbound `message` into its thread (made when it is the first)."""
    thread = await session.scalar(
        select(Thread)
        .where(
            Thread.shop_id == message.shop_id,
            Thread.phone == message.from_phone,
            Thread.channel == message.channel,
        )
        .with_for_update()
    )
    if thread is None:
        thread = Thread(
            shop_id=message.shop_id,
            phone=message.from_phone,
            channel=message.channel,
            created_at=now,
        )
        session.add(thread)
    thread.customer_id = message.customer_id or thread.customer_id
    thread.status = UNANSWERED
    if reason:
        thread.handed_over = reason[:64]
    thread.last_inbound_at = thread.updated_at = now
    await session.flush()
    message.thread_id = thread.id
    return thread


@dataclass(frozen=True)
class ThreadView:
    thread: Thread
    messages: list[Message]  # oldest first


async def threads(db: Database, shop_id: int, status: str | None) -> list[Thread]:
    """The shop's threads, latest activity first, `status` only when given."""
    query = select(Thread).where(Thread.shop_id == shop_id)
    if status is not None:
        query = query.where(Thread.status == status)
    async with db.sessions() as session:
        rows = await session.scalars(
            query.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(LIST_LIMIT)
        )
        return list(rows)


async def thread(db: Database, shop_id: int, thread_id: int) -> ThreadView | None:
    async with db.sessions() as session:
        found = await session.scalar(
            select(Thread).where(Thread.id == thread_id, Thread.shop_id == shop_id)
        )
        if found is None:
            return None
        messages = await session.scalars(
            select(Message)
            .where(Message.thread_id == thread_id, Message.shop_id == shop_id)
            .order_by(Message.created_at, Message.id)
        )
        return ThreadView(found, list(messages))


async def reply(
    db: Database, queue: JobQueue, now: datetime, shop_id: int, thread_id: int, text: str
) -> Message | None:
    """Queue the merchant's answer in the thread; None when the shop has no such thread."""
    async with db.transaction() as session:
        found = await session.scalar(
            select(Thread)
            .where(Thread.id == thread_id, Thread.shop_id == shop_id)
            .with_for_update()
        )
        if found is None:
            return None
        # Back through the provider the customer last wrote to (another may carry the channel).
        via = await session.scalar(
            select(Message.provider)
            .where(Message.thread_id == found.id, Message.direction == "in")
            .order_by(Message.id.desc())
            .limit(1)
        )
        message = await queue_message(
            session,
            queue,
            now,
            shop_id=shop_id,
            channel=found.channel,
            to=found.phone,
            # Each answer is a new message: the merchant may well send the same words twice.
            idempotency_key=f"thread:{thread_id}:{secrets.token_hex(8)}",
            body=text,
            customer_id=found.customer_id,
            details={VIA: via} if via else None,
        )
        message.thread_id = found.id
        found.status = ANSWERED
        found.last_outbound_at = found.updated_at = now
    return message
