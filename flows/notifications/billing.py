"""What the shop's messages cost, per account, channel and journey event: every outbound
SMS and WhatsApp message that left (sent, delivered, read, or in doubt) records the provider
and account that sent it; an SMS costs one credit per segment, a WhatsApp message one."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from flows.notifications.job import key_event
from storage.db import Database
from storage.models import Message

BILLED = ("sent", "delivered", "read", "unconfirmed")


async def billing(
    db: Database, shop_id: int, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """One line per (provider, account, channel, event), with its message count and credits;
    `event` is the journey event of a notification, "" for the shop's other messages."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                Message.provider,
                Message.account,
                Message.channel,
                Message.idempotency_key,
                Message.segments,
            ).where(
                Message.shop_id == shop_id,
                Message.direction == "out",
                Message.status.in_(BILLED),
                Message.created_at >= since,
                Message.created_at <= until,
            )
        )
        sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for provider, account, channel, key, segments in rows:
            line = sums[(provider, account, channel, key_event(key))]
            line[0] += 1
            line[1] += max(segments, 1) if channel == "sms" else 1
    return [
        {
            "provider": provider,
            "account": account,
            "channel": channel,
            "event": event,
            "messages": messages,
            "credits": credits,
        }
        for (provider, account, channel, event), (messages, credits) in sorted(sums.items())
    ]
