"""Consent per shop, customer phone and channel (sms | whatsapp), with its history: one
consent_events row per change. The send gate asks `opted_out` just before each send; a
message whose send details carry CONSENT_REPLY (a keyword's answer) passes it.

A STOP or START is also committed on the line it arrived on (line_consents) when the message
is accepted, before its job runs: so the gate takes the most recent of the shop's consent and
those lines'. A keyword on the platform's shared number speaks for
every shop sending from it, as carriers treat the sender as opted out.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Consent, ConsentEvent, LineConsent

OPTED_IN, OPTED_OUT = "opted_in", "opted_out"
PLATFORM = "platform"
CONSENT_REPLY = "consent_reply"


def line_of(provider: str, shop_id: int | None) -> str:
    """The line a message comes in or goes out on: a shop's own account ("shop:{id}"), else
    the provider's platform account (`shop_id` None), whose numbers shops share."""
    return f"shop:{shop_id}" if shop_id is not None else f"{provider}:{PLATFORM}"


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
    """Set the consent as of `now`; a change is added to its history. True when it changed.
    A decision older than the consent's own (a keyword whose job ran late) changes nothing."""
    consent = await session.scalar(
        select(Consent).where(
            Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == channel
        )
    )
    if consent is not None and (consent.state == state or consent.updated_at > now):
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


async def opted_out(
    session: AsyncSession,
    shop_id: int,
    phone: str,
    channel: str,
    platform_line: str | None = None,
) -> bool:
    """Whether the shop must not message `phone` on `channel`: the most recent of the shop's
    consent, the keyword consent on the shop's own line, and on `platform_line` (the
    platform's account the message goes out through, "{provider}:platform") says opted out."""
    lines = [f"shop:{shop_id}"] + ([platform_line] if platform_line else [])
    found = union_all(
        select(Consent.state, Consent.updated_at, literal(1).label("late")).where(
            Consent.shop_id == shop_id, Consent.phone == phone, Consent.channel == channel
        ),
        select(LineConsent.state, LineConsent.updated_at, literal(0).label("late")).where(
            LineConsent.line.in_(lines),
            LineConsent.phone == phone,
            LineConsent.channel == channel,
        ),
    ).subquery()
    # Of two set at the same moment, a line's comes first: it was written when its message
    # was accepted, the shop's consent only when the job for an earlier one ran. Then the
    # opt-out: in doubt, do not send.
    latest = await session.scalar(
        select(found.c.state)
        .order_by(found.c.updated_at.desc(), found.c.late, (found.c.state == OPTED_OUT).desc())
        .limit(1)
    )
    return latest == OPTED_OUT
