"""A customer's message, from its provider event's job to its answer, in that job's
transaction: which shops and conversations it may be for (`flows.conversations.attribution`),
what the router decides (`flows.conversations.router`), and the records and jobs that follow.

No shop sees a message before it is attributed: a held message is kept in pending_choices
(no message row) until the customer's digit names its order, then it is filed for that shop
alone. A message already recorded (the same provider message id, or held) is a duplicate
delivery: nothing changes and nothing is sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.messaging import VIA, queue_message
from flows.conversations import attribution, router, threads
from flows.conversations.consent import PLATFORM, line_of
from flows.conversations.replies import answer_keyword
from flows.conversations.router import Conversation, State
from flows.shops import config as shop_config
from flows.verification.runtime import Context, Verifier
from providers.events import InboundMessage
from storage.jobs import JobQueue
from storage.models import Activity, Customer, Message, Order, PendingChoice, Shop

_LOGGER = logging.getLogger(__name__)


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
        inbound = attribution.Inbound(
            event,
            shop_id,
            line_of(event.provider, shop_id),
            f"{event.provider}:{event.message_id}",
        )
        await attribution.one_at_a_time(session, event.from_phone)
        if await attribution.seen(session, inbound):
            _LOGGER.info("%s message %s seen before", event.provider, event.message_id)
            return
        senders = await attribution.senders(session, inbound)
        contexts = await attribution.awaiting(session, self.verifier, inbound, senders)
        choice = await attribution.open_choices(session, inbound)
        state = State(
            shared=inbound.shared,
            senders=tuple(senders),
            awaiting=tuple(
                attribution.conversation(self.verifier, ctx, event.channel) for ctx in contexts
            ),
            choice=_options(choice[-1].options) if choice else (),
            question_open=bool(contexts),
        )
        pinned = await attribution.pinned(session, self.verifier, inbound, contexts, senders)
        if pinned is not None:
            contexts = [pinned]
            awaiting = (attribution.conversation(self.verifier, pinned, event.channel),)
            state = replace(state, awaiting=awaiting, question_open=True)
        await self._route(session, inbound, state, contexts, pinned is not None)

    # Effects ---------------------------------------------------------------------------

    async def _route(
        self,
        session: AsyncSession,
        inbound: attribution.Inbound,
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
                    details={VIA: inbound.event.provider},
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
        inbound: attribution.Inbound,
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
                decided_at=inbound.received_at or now,
                via=event.provider,
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
        inbound: attribution.Inbound,
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
            details={VIA: event.provider},
        )

    async def _release(
        self, session: AsyncSession, inbound: attribution.Inbound, shop_id: int, now: datetime
    ) -> None:
        """The customer named the order: their answer and every message held until then go
        to that shop's conversation alone, in the order they came."""
        event = inbound.event
        held = await attribution.open_choices(session, inbound)
        await self._record(session, inbound, shop_id, now, None)
        for choice in held:
            choice.answered_at = now
        for choice in held:
            provider, _, message_id = choice.reference.partition(":")
            released = attribution.Inbound(
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
                for ctx in await attribution.awaiting(session, self.verifier, released, [shop_id])
                if ctx.shop.id == shop_id
            ]
            state = State(
                shared=False,
                senders=(shop_id,),
                awaiting=tuple(
                    attribution.conversation(self.verifier, ctx, event.channel) for ctx in contexts
                ),
                question_open=bool(contexts),
            )
            pinned = await attribution.pinned(
                session, self.verifier, released, contexts, [shop_id]
            )
            if pinned is not None:
                contexts = [pinned]
                state = replace(
                    state,
                    awaiting=(attribution.conversation(self.verifier, pinned, event.channel),),
                )
            await self._route(session, released, state, contexts, pinned is not None)

    async def _record(
        self,
        session: AsyncSession,
        inbound: attribution.Inbound,
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


def _options(stored: list[dict[str, object]]) -> tuple[Conversation, ...]:
    """The orders a held choice offers (all a digit needs: the shop and the label)."""
    return tuple(Conversation(int(str(o["shop_id"])), 0, str(o["label"])) for o in stored)


def _of_shop(contexts: list[Context], shop_id: int) -> Context | None:
    return next((ctx for ctx in contexts if ctx.shop.id == shop_id), None)
