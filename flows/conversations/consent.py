"""Consent per shop, customer phone and channel (sms | whatsapp), with its history: one
consent_events row per change. The send gate asks `opted_out` just before each send; a
message whose send details carry CONSENT_REPLY (a keyword's answer) passes it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Consent, ConsentEvent

OPTED_IN, OPTED_OUT = "opted_in", "opted_out"
CONSENT_REPLY = "consent_reply"


async def record(
    session: AsyncSession,
    now: datetime,
    *,
    shop_id: int,
    phone: str,
    channel: str,
    state: str,
    source: str,
    reference: str = "",
) -> bool:
    """Set the consent; a change is added to its history. True when it changed."""
    consent = await session.scalar(
        select(Consent).where(
            Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == channel
        )
    )
    if consent is not None and consent.state == state:
        return False
    if consent is None:
        consent = Consent(shop_id=shop_id, phone=phone, channel=channel)
        session.add(consent)
    consent.state, consent.source, consent.updated_at = state, source, now
    session.add(
        ConsentEvent(
            shop_id=shop_id,
            phone=phone,
            channel=channel,
            state=state,
            source=source,
            reference=reference,
            created_at=now,
        )
    )
    return True


async def opted_out(session: AsyncSession, shop_id: int, phone: str, channel: str) -> bool:
    state = await session.scalar(
        select(Consent.state).where(
            Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == channel
        )
    )
    return state == OPTED_OUT
