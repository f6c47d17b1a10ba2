"""The answers to the compliance keywords.

STOP opts the phone out on the channel it came from, START opts it back in, HELP changes
nothing; each is answered by exactly one message (the shop's texts, seed 001's by default),
keyed by the inbound message so a repeated delivery queues nothing new. Twilio's Advanced
Opt-Out has already answered the customer itself: its keywords are recorded without a
reply. An answer carries CONSENT_REPLY in its send details, which lets it through the send
gate (a STOP's confirmation goes to a phone that has just opted out).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from flows.channels.messaging import VIA, queue_message
from flows.conversations.consent import CONSENT_REPLY, OPTED_IN, OPTED_OUT, record
from flows.conversations.keywords import HELP_TEXT as HELP_TEXT
from flows.conversations.keywords import START_TEXT as START_TEXT
from flows.conversations.keywords import STOP_TEXT as STOP_TEXT
from flows.conversations.keywords import Keyword
from flows.conversations.shopify_consent import queue_consent_sync
from flows.shops import config as shop_config
from storage.jobs import JobQueue
from storage.models import Shop

_STATES = {Keyword.STOP: OPTED_OUT, Keyword.START: OPTED_IN}


def reply_text(keyword: Keyword, shop: Shop) -> str:
    settings = shop_config.stored(shop)
    section = settings.conversations
    if keyword is Keyword.STOP:
        return section.stop_text
    if keyword is Keyword.START:
        return section.start_text
    # The contact phone the merchant set, else the one Shopify gave for the shop.
    phone = settings.contact_phone or shop.phone or shop.name
    return section.help_text.replace("%phone%", phone)


async def answer_keyword(
    session: AsyncSession,
    queue: JobQueue,
    now: datetime,
    keyword: Keyword,
    *,
    shop: Shop,
    channel: str,
    phone: str,
    inbound_id: str,
    reply: bool,
    decided_at: datetime,
    via: str,
    customer_id: int | None = None,
    order_id: int | None = None,
) -> None:
    """Apply `keyword` from `phone` on `channel` for `shop` and queue its one answer, unless
    the provider answered it already (`reply` False), through the provider it came `via`.
    The consent dates from `decided_at`, when the message was accepted: a later keyword
    accepted before this job ran stays the newer one."""
    if keyword in _STATES:
        await record(
            session,
            decided_at,
            shop_id=shop.id,
            phone=phone,
            channel=channel,
            state=_STATES[keyword],
            source="keyword",
            reference=inbound_id,
        )
        if channel == "sms":  # Shopify holds SMS marketing consent only
            await queue_consent_sync(
                session, queue, decided_at, shop.id, phone, _STATES[keyword], inbound_id
            )
    if not reply:
        return
    await queue_message(
        session,
        queue,
        now,
        shop_id=shop.id,
        channel=channel,
        to=phone,
        idempotency_key=f"keyword:{shop.id}:{inbound_id}",
        body=reply_text(keyword, shop),
        order_id=order_id,
        customer_id=customer_id,
        details={CONSENT_REPLY: keyword.value, VIA: via},
    )
