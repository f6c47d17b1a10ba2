"""A customer's message, from its provider event's job to its answer, in that job's
transaction: which shops it may be for, what the router (`flows.conversations.router`)
decides, and the records and jobs that follow.

The line is the account the message came in on: a shop's own ("shop:{id}", only that shop
can be meant) or a provider's platform account, whose numbers all shops using it share
("{provider}:platform"). On a shared line, the shops it may be for are those that sent to
this phone on this channel from this account and number, latest first; never simply the
shop the phone last bought from. Their open conversations are the answerable verifications
whose messages went out there.

No shop sees a message before it is attributed: a held message is kept in pending_choices
(no message row) until the customer's digit names its order, then it is filed for that shop
alone. A message already recorded (the same provider message id, or held) is a duplicate
delivery: nothing changes and nothing is sent.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.messaging import queue_message
from flows.conversations import router, threads
from flows.conversations.replies import answer_keyword
from flows.conversations.router import Conversation, State
from flows.shops import config as shop_config
from flows.verification.flow import ANSWERABLE
from flows.verification.runtime import Context, Verifier, postback_verification
from providers.events import InboundMessage
from storage.jobs import JobQueue
from storage.models import Activity, Customer, Message, Order, PendingChoice, Shop, Verification

_LOGGER = logging.getLogger(__name__)

PLATFORM = "platform"
# How many of the latest messages to the phone on the line are read to find their shops.
_RECENT = 50


def line_of(provider: str, shop_id: int | None) -> str:
    """The line a message came in on: a shop's own account, else the provider's platform
    account (`shop_id` None), which shops share."""
    return f"shop:{shop_id}" if shop_id is not None else f"{provider}:{PLATFORM}"


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


@dataclass
class _Inbound:
    """The message being routed, and where it came in."""

    event: InboundMessage
    shop_id: int | None  # the line's shop, None on a shared line
    line: str
    reference: str  # "{provider}:{message id}"

    @property
    def shared(self) -> bool:
        return self.shop_id is None


class Conversations:
    """Routes inbound customer messages (called by the provider event job)."""

    def __init__(self, clock: Clock, queue: JobQueue, verifier: Verifier) -> None:
        self.clock = clock
        self.queue = queue
        self.verifier = verifier

    async def receive(
        self, session: AsyncSession, event: InboundMessage, shop_id: int | None
    ) -> None:
        """Route one inbound message; `shop_id` is the shop whose own account it came to."""
        inbound = _Inbound(
            event,
            shop_id,
            line_of(event.provider, shop_id),
            f"{event.provider}:{event.message_id}",
        )
        await _one_at_a_time(session, event.from_phone)
        if await self._seen(session, inbound):
            _LOGGER.info("%s message %s seen before", event.provider, event.message_id)
            return
        senders = await self._senders(session, inbound)
        contexts = await self._awaiting(session, inbound, senders)
        choice = await self._open_choices(session, inbound)
        state = State(
            shared=inbound.shared,
            senders=tuple(senders),
            awaiting=tuple(self._conversation(ctx, event.channel) for ctx in contexts),
            choice=_options(choice[-1].options) if choice else (),
            question_open=bool(contexts),
        )
        pinned = await self._pinned(session, inbound, contexts, senders)
        if pinned is not None:
            contexts = [pinned]
            awaiting = (self._conversation(pinned, event.channel),)
            state = replace(state, awaiting=awaiting, question_open=True)
        await self._route(session, inbound, state, contexts, pinned is not None)

    # Attribution -------------------------------------------------------------------------

    async def _seen(self, session: AsyncSession, inbound: _Inbound) -> bool:
        event = inbound.event
        recorded = select(Message.id).where(
            Message.provider == event.provider,
            Message.provider_message_id == event.message_id,
        )
        held = select(PendingChoice.id).where(PendingChoice.reference == inbound.reference)
        found = await session.scalar(select(or_(recorded.exists(), held.exists())))
        return bool(found)

    async def _senders(self, session: AsyncSession, inbound: _Inbound) -> list[int]:
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

    async def _awaiting(
        self, session: AsyncSession, inbound: _Inbound, senders: list[int]
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
            ctx = await self.verifier.load(session, verification_id)
            if ctx is None:
                continue
            best = found.get(shop_id)
            if best is None or (
                not self.verifier.reply_options(best, event.channel)
                and self.verifier.reply_options(ctx, event.channel)
            ):
                found[shop_id] = ctx
        return sorted(found.values(), key=lambda ctx: senders.index(ctx.shop.id))

    async def _pinned(
        self, session: AsyncSession, inbound: _Inbound, contexts: list[Context], senders: list[int]
    ) -> Context | None:
        """The open conversation a button's postback names, if it is the phone's own with a
        shop that may be meant (a button of an older order's message counts too)."""
        verification_id = postback_verification(inbound.event.button)
        if verification_id is None:
            return None
        found = next((ctx for ctx in contexts if ctx.row.id == verification_id), None)
        if found is None:
            found = await self.verifier.load(session, verification_id)
        if (
            found is None
            or found.shop.id not in senders
            or found.order.phone != inbound.event.from_phone
            or found.state.status not in ANSWERABLE
        ):
            return None
        return found

    def _conversation(self, ctx: Context, channel: str) -> Conversation:
        return Conversation(
            shop_id=ctx.shop.id,
            ref=ctx.row.id,
            label=f"{ctx.shop.name or ctx.shop.domain} order {ctx.order.name}",
            options=self.verifier.reply_options(ctx, channel),
            not_understood=ctx.state.not_understood,
        )

    async def _open_choices(self, session: AsyncSession, inbound: _Inbound) -> list[PendingChoice]:
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

    # Effects ---------------------------------------------------------------------------

    async def _route(
        self,
        session: AsyncSession,
        inbound: _Inbound,
        state: State,
        contexts: list[Context],
        pinned: bool,
    ) -> None:
        shops = {shop.id: shop for shop in await self._shops(session, state)}
        settings = {shop.id: shop_config.stored(shop).conversations for shop in shops.values()}
        message = router.Message(
            inbound.event.text, inbound.event.button, inbound.event.opt_out_type, pinned
        )
        _, effects = router.step(state, message, settings)
        by_ref = {ctx.row.id: ctx for ctx in contexts}
        now = self.clock.now()
        for effect in effects:
            if isinstance(effect, router.Comply):
                await self._comply(session, inbound, effect, shops, by_ref, now)
            elif isinstance(effect, router.Ask):
                await self._ask(session, inbound, effect, by_ref, now)
            elif isinstance(effect, router.Release):
                await self._release(session, inbound, effect.shop_id, now)
            elif isinstance(effect, router.Answer):
                ctx = by_ref[effect.ref]
                await self._record(session, inbound, effect.shop_id, now, ctx)
                await self.verifier.reply(session, ctx, effect.action)
            elif isinstance(effect, router.NotUnderstood):
                ctx = by_ref[effect.ref]
                await self._record(session, inbound, effect.shop_id, now, ctx)
                self.verifier.not_understood(ctx, effect.count)
                await queue_message(
                    session,
                    self.queue,
                    now,
                    shop_id=effect.shop_id,
                    channel=inbound.event.channel,
                    to=inbound.event.from_phone,
                    idempotency_key=f"conversation:{effect.ref}:not_understood:{effect.count}",
                    body=effect.text,
                    order_id=ctx.order.id,
                    customer_id=ctx.order.customer_id,
                )
            elif isinstance(effect, router.ToMerchant):
                ctx = by_ref.get(effect.ref) or _of_shop(contexts, effect.shop_id)
                message_row = await self._record(session, inbound, effect.shop_id, now, ctx)
                await threads.file(session, now, message_row, effect.reason)
                if effect.reason and message_row.order_id is not None:
                    session.add(
                        Activity(
                            shop_id=effect.shop_id,
                            order_id=message_row.order_id,
                            kind="handed_over",
                            mode=inbound.event.channel,
                            detail={"reason": effect.reason, "message_id": message_row.id},
                            created_at=now,
                        )
                    )
            else:
                _LOGGER.info(
                    "%s message from %s on %s dropped: %s",
                    inbound.event.provider,
                    inbound.event.from_phone,
                    inbound.line,
                    effect.reason,
                )

    async def _shops(self, session: AsyncSession, state: State) -> list[Shop]:
        ids = {*state.senders, *(c.shop_id for c in state.awaiting)}
        if not ids:
            return []
        rows = await session.scalars(select(Shop).where(Shop.id.in_(ids)))
        return [shop for shop in rows if shop.status != "uninstalled"]

    async def _comply(
        self,
        session: AsyncSession,
        inbound: _Inbound,
        effect: router.Comply,
        shops: dict[int, Shop],
        by_ref: dict[int, Context],
        now: datetime,
    ) -> None:
        event = inbound.event
        targets = [shops[shop_id] for shop_id in effect.shops if shop_id in shops]
        if not targets:
            _LOGGER.info(
                "%s keyword %s from %s on %s: no shop wrote to this phone from this line",
                event.provider,
                effect.keyword.value.upper(),
                event.from_phone,
                inbound.line,
            )
            return
        for shop in targets:
            ctx = _of_shop(list(by_ref.values()), shop.id)
            # One message row (a provider message id is recorded once): the answering shop's.
            row = None
            if shop.id == (effect.reply_shop or targets[0].id):
                keyword = effect.keyword.value
                row = await self._record(session, inbound, shop.id, now, ctx, keyword)
            await answer_keyword(
                session,
                self.queue,
                now,
                effect.keyword,
                shop=shop,
                channel=event.channel,
                phone=event.from_phone,
                inbound_id=inbound.reference,
                reply=shop.id == effect.reply_shop,
                customer_id=row.customer_id if row else None,
                order_id=row.order_id if row else None,
            )

    async def _ask(
        self,
        session: AsyncSession,
        inbound: _Inbound,
        effect: router.Ask,
        by_ref: dict[int, Context],
        now: datetime,
    ) -> None:
        event = inbound.event
        orders = {ref: ctx.order.id for ref, ctx in by_ref.items()}
        if effect.hold:
            session.add(
                PendingChoice(
                    line=inbound.line,
                    phone=event.from_phone,
                    channel=event.channel,
                    options=[
                        {"shop_id": o.shop_id, "order_id": orders.get(o.ref), "label": o.label}
                        for o in effect.options
                    ],
                    held_text=inbound.event.text,
                    held_button=inbound.event.button[:255],
                    reference=inbound.reference,
                    created_at=now,
                )
            )
        # The question goes out on the line, carried by the account of the latest shop to
        # write (every option's messages went out on it).
        await queue_message(
            session,
            self.queue,
            now,
            shop_id=effect.options[0].shop_id,
            channel=event.channel,
            to=event.from_phone,
            idempotency_key=f"choice:{inbound.reference}",
            body=router.choice_question(effect.options),
        )

    async def _release(
        self, session: AsyncSession, inbound: _Inbound, shop_id: int, now: datetime
    ) -> None:
        """The customer named the order: their answer and every message held until then go
        to that shop's conversation alone, in the order they came."""
        event = inbound.event
        held = await self._open_choices(session, inbound)
        await self._record(session, inbound, shop_id, now, None)
        for choice in held:
            choice.answered_at = now
        for choice in held:
            provider, _, message_id = choice.reference.partition(":")
            released = _Inbound(
                InboundMessage(
                    provider,
                    message_id,
                    event.channel,
                    event.from_phone,
                    event.to,
                    choice.held_text,
                    choice.held_button,
                ),
                inbound.shop_id,
                inbound.line,
                choice.reference,
            )
            contexts = [
                ctx
                for ctx in await self._awaiting(session, released, [shop_id])
                if ctx.shop.id == shop_id
            ]
            state = State(
                shared=False,
                senders=(shop_id,),
                awaiting=tuple(self._conversation(ctx, event.channel) for ctx in contexts),
                question_open=bool(contexts),
            )
            pinned = await self._pinned(session, released, contexts, [shop_id])
            if pinned is not None:
                contexts = [pinned]
                state = replace(state, awaiting=(self._conversation(pinned, event.channel),))
            await self._route(session, released, state, contexts, pinned is not None)

    async def _record(
        self,
        session: AsyncSession,
        inbound: _Inbound,
        shop_id: int,
        now: datetime,
        ctx: Context | None,
        keyword: str = "",
    ) -> Message:
        """The inbound message's row for the shop it is attributed to, and its line on the
        order's timeline."""
        event = inbound.event
        recorded = await session.scalar(
            select(Message).where(
                Message.provider == event.provider,
                Message.provider_message_id == event.message_id,
            )
        )
        if recorded is not None:  # filed and flagged, then opted out: one row
            return recorded
        customer = await session.scalar(
            select(Customer)
            .where(Customer.shop_id == shop_id, Customer.phone == event.from_phone)
            .order_by(Customer.created_at.desc())
            .limit(1)
        )
        order = ctx.order if ctx is not None else None
        if order is None and customer is not None:
            order = await session.scalar(
                select(Order)
                .where(Order.shop_id == shop_id, Order.customer_id == customer.id)
                .order_by(Order.placed_at.desc())
                .limit(1)
            )
        message = Message(
            shop_id=shop_id,
            order_id=order.id if order else None,
            customer_id=customer.id if customer else None,
            channel=event.channel,
            direction="in",
            provider=event.provider,
            account="shop" if inbound.shop_id is not None else PLATFORM,
            to_phone=event.to,
            from_phone=event.from_phone,
            body=inbound.event.text,
            provider_message_id=event.message_id,
            status="received",
            created_at=now,
            updated_at=now,
        )
        session.add(message)
        await session.flush()
        if order is not None:
            detail: dict[str, object] = {"message_id": message.id, "button": inbound.event.button}
            if keyword:
                detail["keyword"] = keyword
            session.add(
                Activity(
                    shop_id=shop_id,
                    order_id=order.id,
                    kind="message_received",
                    mode=event.channel,
                    detail=detail,
                    created_at=now,
                )
            )
        return message


async def _one_at_a_time(session: AsyncSession, phone: str) -> None:
    """Hold the phone's lock until the transaction ends: its messages are routed one after the
    other (a repeated delivery sees the first one recorded; two messages do not both start
    a thread or a held choice). SQLite runs one writing transaction at a time anyway."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(phone.encode()).digest()[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _options(stored: list[dict[str, object]]) -> tuple[Conversation, ...]:
    """The orders a held choice offers (all a digit needs: the shop and the label)."""
    return tuple(Conversation(int(str(o["shop_id"])), 0, str(o["label"])) for o in stored)


def _of_shop(contexts: list[Context], shop_id: int) -> Context | None:
    return next((ctx for ctx in contexts if ctx.shop.id == shop_id), None)
