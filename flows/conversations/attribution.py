"""Which shops and conversations a customer's message may be for.

The line is the account the message came in on: a shop's own ("shop:{id}", only that shop
can be meant) or a provider's platform account, whose numbers all shops using it share
("{provider}:platform"). On a shared line, the shops it may be for are those that sent to
this phone on this channel from this account and number, latest first; never simply the
shop the phone last bought from. Their open conversations are the answerable verifications
whose messages went out there; a button's postback names its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from flows.conversations.consent import PLATFORM
from flows.conversations.router import Conversation
from flows.verification.flow import ANSWERABLE
from flows.verification.runtime import Context, Verifier, postback_verification
from providers.events import InboundMessage
from storage.models import Message, Order, PendingChoice, Verification

# How many of the latest messages to the phone on the line are read to find their shops.
_RECENT = 50


def same_number(sent_from: str, to: str) -> bool:
    """Whether a message sent from `sent_from` came from the number a reply went `to`. A
    sender id or an app name (no phone number: the provider's account is the line) matches."""
    ours, theirs = _digits(sent_from), _digits(to)
    if len(ours) < 6 or len(theirs) < 6:
        return True
    # The same number written with or without its country code or trunk prefix.
    return ours[-10:] == theirs[-10:]


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


@dataclass(frozen=True)
class Inbound:
    """The message being routed, and where it came in."""

    event: InboundMessage
    shop_id: int | None  # the line's shop, None on a shared line
    line: str
    reference: str  # "{provider}:{message id}"

    @property
    def shared(self) -> bool:
        return self.shop_id is None

    @property
    def received_at(self) -> datetime | None:
        """When the intake accepted it (None for an event queued before it said)."""
        return datetime.fromisoformat(self.event.received_at) if self.event.received_at else None


async def seen(session: AsyncSession, inbound: Inbound) -> bool:
    """Whether the message was recorded or held before: a repeated delivery."""
    event = inbound.event
    recorded = select(Message.id).where(
        Message.provider == event.provider,
        Message.provider_message_id == event.message_id,
    )
    held = select(PendingChoice.id).where(PendingChoice.reference == inbound.reference)
    found = await session.scalar(select(or_(recorded.exists(), held.exists())))
    return bool(found)


async def senders(session: AsyncSession, inbound: Inbound) -> list[int]:
    """The shops that may be meant, latest first: the line's shop, or those that sent to
    the phone from this shared line's account and number."""
    if inbound.shop_id is not None:
        return [inbound.shop_id]
    event = inbound.event
    latest = func.max(Message.id)
    rows = await session.execute(
        select(Message.shop_id, Message.from_phone, latest)
        .where(
            Message.direction == "out",
            Message.to_phone == event.from_phone,
            Message.channel == event.channel,
            Message.provider == event.provider,
            Message.account == PLATFORM,
        )
        .group_by(Message.shop_id, Message.from_phone)
        .order_by(latest.desc())
        .limit(_RECENT)
    )
    shops: dict[int, None] = {}
    for shop_id, sent_from, _ in rows:
        if same_number(sent_from, event.to):
            shops.setdefault(shop_id, None)
    return list(shops)


async def awaiting(
    session: AsyncSession, verifier: Verifier, inbound: Inbound, senders: list[int]
) -> list[Context]:
    """Each shop's open conversation with the phone (its verification that still takes an
    answer, one that takes replies on this channel first), latest shop first. On a shared
    line only a verification whose messages went out on it counts."""
    if not senders:
        return []
    event = inbound.event
    query = (
        select(Verification.id, Verification.shop_id)
        .join(Order, Verification.order_id == Order.id)
        .where(
            Verification.shop_id.in_(senders),
            Order.phone == event.from_phone,
            Verification.state.in_(ANSWERABLE),
        )
        .order_by(Order.placed_at.desc(), Order.id.desc())
    )
    if inbound.shared:
        query = query.where(
            select(Message.id)
            .where(
                Message.order_id == Order.id,
                Message.direction == "out",
                Message.channel == event.channel,
                Message.provider == event.provider,
                Message.account == PLATFORM,
            )
            .exists()
        )
    found: dict[int, Context] = {}
    for verification_id, shop_id in list(await session.execute(query)):
        ctx = await verifier.load(session, verification_id)
        if ctx is None:
            continue
        best = found.get(shop_id)
        if best is None or (
            not verifier.reply_options(best, event.channel)
            and verifier.reply_options(ctx, event.channel)
        ):
            found[shop_id] = ctx
    return sorted(found.values(), key=lambda ctx: senders.index(ctx.shop.id))


async def pinned(
    session: AsyncSession,
    verifier: Verifier,
    inbound: Inbound,
    contexts: list[Context],
    senders: list[int],
) -> Context | None:
    """The open conversation a button's postback names, if it is the phone's own with a
    shop that may be meant (a button of an older order's message counts too)."""
    verification_id = postback_verification(inbound.event.button)
    if verification_id is None:
        return None
    found = next((ctx for ctx in contexts if ctx.row.id == verification_id), None)
    if found is None:
        found = await verifier.load(session, verification_id)
    if (
        found is None
        or found.shop.id not in senders
        or found.order.phone != inbound.event.from_phone
        or found.state.status not in ANSWERABLE
    ):
        return None
    return found


def conversation(verifier: Verifier, ctx: Context, channel: str) -> Conversation:
    """The router's view of a verification awaiting the phone's answer."""
    return Conversation(
        shop_id=ctx.shop.id,
        ref=ctx.row.id,
        label=f"{ctx.shop.name or ctx.shop.domain} order {ctx.order.name}",
        options=verifier.reply_options(ctx, channel),
        not_understood=ctx.state.not_understood,
    )


async def open_choices(session: AsyncSession, inbound: Inbound) -> list[PendingChoice]:
    """The messages held on this line for the phone until it says which order, oldest
    first."""
    event = inbound.event
    rows = await session.scalars(
        select(PendingChoice)
        .where(
            PendingChoice.line == inbound.line,
            PendingChoice.phone == event.from_phone,
            PendingChoice.channel == event.channel,
            PendingChoice.answered_at.is_(None),
        )
        .order_by(PendingChoice.id)
        .with_for_update()
    )
    return list(rows)


async def one_at_a_time(session: AsyncSession, phone: str) -> None:
    """Hold the phone's lock until the transaction ends: its messages are routed one after the
    other (a repeated delivery sees the first one recorded; two messages do not both start
    a thread or a held choice). SQLite runs one writing transaction at a time anyway."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(phone.encode()).digest()[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
