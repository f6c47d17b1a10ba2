"""A customer's consent as the merchant reads and changes it: per channel, the state, its
source and time, and its history (newest first). A change made here is recorded like a
keyword's, with its own source (merchant, api, checkout), and the send gate obeys it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from clock import Clock
from flows.conversations import consent
from storage.db import Database
from storage.models import Consent, ConsentEvent

CHANNELS = ("sms", "whatsapp")
STATES = (consent.OPTED_IN, consent.OPTED_OUT)
SOURCES = ("merchant", "api", "checkout")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ChannelConsent:
    state: str  # opted_in | opted_out | unknown (never recorded)
    source: str | None
    updated_at: datetime | None
    history: list[ConsentEvent]  # newest first


async def read(db: Database, shop_id: int, phone: str) -> dict[str, ChannelConsent]:
    async with db.sessions() as session:
        current = {
            row.channel: row
            for row in await session.scalars(
                select(Consent).where(Consent.shop_id == shop_id, Consent.phone == phone)
            )
        }
        events = list(
            await session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.shop_id == shop_id, ConsentEvent.phone == phone)
                .order_by(ConsentEvent.created_at.desc(), ConsentEvent.id.desc())
            )
        )
    found = {}
    for channel in CHANNELS:
        row = current.get(channel)
        history = [event for event in events if event.channel == channel]
        if row is None:
            found[channel] = ChannelConsent(UNKNOWN, None, None, history)
        else:
            found[channel] = ChannelConsent(row.state, row.source, row.updated_at, history)
    return found


async def change(
    db: Database,
    clock: Clock,
    shop_id: int,
    phone: str,
    *,
    channel: str,
    state: str,
    source: str,
) -> None:
    """Record the merchant's change (nothing new when the state is already so)."""
    async with db.transaction() as session:
        await consent.record(
            session,
            clock.now(),
            shop_id=shop_id,
            phone=phone,
            channel=channel,
            state=state,
            source=source,
        )
