"""Consent per shop, customer phone and channel (sms | whatsapp), with its history: one
consent_events row per change. The send gate asks `opted_out` just before each send; a
message whose send details carry CONSENT_REPLY (a keyword's answer) passes it.

A STOP or START is also committed on the line it arrived on (line_consents) when the message
is accepted, before its job runs: so the gate takes the most recent of the shop's consent and
those lines'. A keyword on the platform's shared number speaks for
every shop sending from it, as carriers treat the sender as opted out.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
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
    ask = Ask(shop_id, phone, channel, platform_line)
    return ask in await opted_out_of(session, [ask])


@dataclass(frozen=True)
class Ask:
    """May the shop message this phone on this channel (through this platform line)?"""

    shop_id: int
    phone: str
    channel: str
    platform_line: str | None = None

    @property
    def lines(self) -> list[str]:
        return [f"shop:{self.shop_id}"] + ([self.platform_line] if self.platform_line else [])


async def opted_out_of(session: AsyncSession, asks: Collection[Ask]) -> set[Ask]:
    """The asks whose phone must not be messaged (see `opted_out`), in two queries however
    many (a batch of sends passing the gate together)."""
    if not asks:
        return set()
    phones = {ask.phone for ask in asks}
    channels = {ask.channel for ask in asks}
    # (state, set at, a line's: 0, the shop's: 1), per (shop or line, phone, channel).
    found: dict[tuple[int | str, str, str], list[tuple[str, datetime, int]]] = {}
    for shop_id, phone, channel, state, updated_at in await session.execute(
        select(Consent.shop_id, Consent.phone, Consent.channel, Consent.state, Consent.updated_at)
        .where(Consent.shop_id.in_({ask.shop_id for ask in asks}))
        .where(Consent.phone.in_(phones), Consent.channel.in_(channels))
    ):
        found.setdefault((shop_id, phone, channel), []).append((state, updated_at, 1))
    lines = {line for ask in asks for line in ask.lines}
    for line, phone, channel, state, updated_at in await session.execute(
        select(
            LineConsent.line,
            LineConsent.phone,
            LineConsent.channel,
            LineConsent.state,
            LineConsent.updated_at,
        )
        .where(LineConsent.line.in_(lines))
        .where(LineConsent.phone.in_(phones), LineConsent.channel.in_(channels))
    ):
        found.setdefault((line, phone, channel), []).append((state, updated_at, 0))
    out = set()
    for ask in asks:
        places: list[int | str] = [ask.shop_id, *ask.lines]
        known = [c for place in places for c in found.get((place, ask.phone, ask.channel), [])]
        # The most recent; of two set at the same moment, a line's first: it was written
        # when its message was accepted, the shop's consent only when the job for an earlier
        # one ran. Then the opt-out: in doubt, do not send.
        if known and max(known, key=lambda c: (c[1], -c[2], c[0] == OPTED_OUT))[0] == OPTED_OUT:
            out.add(ask)
    return out
