"""Runs order verifications: loads a verification with its order, shop and settings (row
locked), feeds an event to the pure flow (`flows.verification.flow.step`), and in the same
transaction stores the new state and turns every effect into a durable job (call, message,
tags, cancel, timer) or a line of the order's timeline.

Events come from the order's webhook (start, stop), timers, the call job and provider
callbacks (call end, keypad), the customer's page and OTP entry, missed calls and replies, and
the send job of the verification's messages (a message that could not be sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_symbol
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import PLATFORM, selected, shop_accounts
from flows.channels.messaging import Outbound, queue_messages
from flows.conversations.consent import Ask, line_of, opted_out_of
from flows.conversations.router import Option
from flows.notifications.events import ORDER_CONFIRMED, JourneyEvent
from flows.notifications.job import notify_job
from flows.notifications.merchant import merchant_jobs
from flows.orders.actions import queue_cancel, queue_tags
from flows.shops import config as shop_config
from flows.shops.settings import ShopSettings, methods
from flows.verification.customer_keys import CustomerKeys
from flows.verification.flow import (
    ANSWERABLE,
    CHANNELS,
    PENDING,
    AddTags,
    Answer,
    CancelOrder,
    Effect,
    Event,
    MessageFailed,
    NotifyMerchant,
    OrderChanged,
    OrderFacts,
    PlaceCall,
    Record,
    SendMessage,
    Start,
    StartTimer,
    Timer,
    VState,
    WindowClosed,
    held_until,
    options,
    step,
)
from flows.verification.ivr import language_of
from providers.sms import is_gsm7, to_gsm7
from storage.db import Database, write_back
from storage.jobs import ClaimedJob, JobQueue, NewJob
from storage.models import Activity, Customer, Message, Order, Shop, Verification
from storage.types import json_text

_LOGGER = logging.getLogger(__name__)

VERIFY_ORDER_JOB = "verification.order"
TIMER_JOB = "verification.timer"
CALL_JOB = "verification.call"
PAID = frozenset({"paid", "partially_paid", "refunded", "partially_refunded"})
MISSED_CALL_WINDOW = timedelta(days=30)
# Shops whose parsed settings a process keeps (the oldest make room).
SETTINGS_KEPT = 1024
# Where a batch of starts gathers what it writes together (in the session's info).
_GATHERED = "verification_batch"
# A batch of starts: its contexts, and the channels each (shop, phone) opted out of, read
# for the whole batch the first time one of them is asked.
_STARTING, _OPTED_OUT = "verification_starting", "verification_opted_out"
# The timeline's mode of each message a verification sends.
_MODES = {"missed_call_confirmation": "missed_call"}


def verification_job(order: Order, is_new: bool) -> NewJob | None:
    """The job an order event needs: start a new order's verification, or stop a running one
    whose order was cancelled or paid in Shopify."""
    if not is_new and not stopping(order):
        return None
    version = "new" if is_new else stop_reason(order)
    return NewJob(
        VERIFY_ORDER_JOB,
        {"shop_id": order.shop_id, "shopify_order_id": order.shopify_order_id},
        idempotency_key=f"{VERIFY_ORDER_JOB}:{order.shop_id}:{order.shopify_order_id}:{version}",
        shop_id=order.shop_id,
    )


def stopping(order: Order) -> bool:
    """Whether the order's running verification must stop (see `stop_reason`)."""
    return order.verification_status in ANSWERABLE and bool(stop_reason(order))


def stop_reason(order: Order) -> str:
    if order.cancelled_at is not None:
        return "order cancelled in Shopify"
    if order.financial_status in PAID:
        return f"order {order.financial_status} in Shopify"
    return ""


def call_key(verification_id: int, call: str) -> str:
    """The idempotency key of a verification call; `call_ref` reads it back."""
    return f"verify:{verification_id}:call:{call}"


def call_ref(key: str | None) -> tuple[int, str] | None:
    """(verification id, call reference) of a verification call's key, else None."""
    prefix, _, rest = (key or "").partition(":")
    vid, _, call = rest.partition(":call:")
    if prefix != "verify" or not vid.isdigit() or not call:
        return None
    return int(vid), call


def message_key(verification_id: int, purpose: str, key: str) -> str:
    """The idempotency key of a verification's message; `message_ref` reads it back."""
    return f"verify:{verification_id}:{purpose}:{key}"


def message_ref(key: str | None) -> tuple[int, str, str] | None:
    """(verification id, purpose, key) of a verification message's key, else None."""
    prefix, _, rest = (key or "").partition(":")
    vid, _, rest = rest.partition(":")
    purpose, _, key = rest.partition(":")
    if prefix != "verify" or not vid.isdigit() or not purpose or purpose == "call" or not key:
        return None
    return int(vid), purpose, key


@dataclass
class _Gathered:
    """The timer and call jobs, the messages and the timeline lines a batch of starts writes
    at its end."""

    jobs: list[NewJob] = field(default_factory=list)
    messages: list[Outbound] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Context:
    row: Verification
    order: Order
    shop: Shop
    settings: ShopSettings

    @property
    def state(self) -> VState:
        return VState.from_json(self.row.data) if self.row.data else VState()


class Verifier:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        queue: JobQueue,
        box: Any,
        keys: CustomerKeys,
        public_url: str,
    ) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.box = box
        self.keys = keys
        self.public_url = public_url
        # Parsed settings by the document they were parsed from: a saved change is a new key.
        self._settings: dict[tuple[int, str, str], ShopSettings] = {}

    def settings_of(self, shop: Shop) -> ShopSettings:
        """The settings the shop works by (`shop_config.load`), parsed once per document
        and time zone in this process: every call and message of a flood reads them."""
        key = (shop.id, shop.timezone, json_text(shop.settings))
        found = self._settings.get(key)
        if found is None:
            if len(self._settings) >= SETTINGS_KEPT:
                del self._settings[next(iter(self._settings))]
            found = self._settings[key] = shop_config.load(shop)
        return found

    # Jobs ------------------------------------------------------------------------------

    async def handle_order(self, job: ClaimedJob) -> None:
        """VERIFY_ORDER_JOB: start the order's verification, or stop it."""
        await self.handle_orders([job])

    async def handle_orders(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        """VERIFY_ORDER_JOB, a batch at a time: the orders and shops read together, then
        `orders_changed` in one transaction."""
        async with self.db.transaction() as session:
            wanted = {(j.payload["shop_id"], j.payload["shopify_order_id"]) for j in jobs}
            shop_ids = {shop_id for shop_id, _ in wanted}
            orders = {
                (order.shop_id, order.shopify_order_id): order
                for order in await session.scalars(
                    select(Order).where(
                        Order.shop_id.in_(shop_ids),
                        Order.shopify_order_id.in_({order_id for _, order_id in wanted}),
                    )
                )
            }
            shops = {
                shop.id: shop
                for shop in await session.scalars(select(Shop).where(Shop.id.in_(shop_ids)))
            }
            found = [
                (shops[key[0]], orders[key])
                for key in sorted(wanted)
                if key in orders and key[0] in shops
            ]
            await self.orders_changed(session, found)
        return [None] * len(jobs)

    async def orders_changed(
        self, session: AsyncSession, orders: Sequence[tuple[Shop, Order]]
    ) -> None:
        """Start the verification of each order that has none, stop the running one of each
        order cancelled or paid in Shopify: in the caller's transaction (the webhook batch
        that wrote the orders, or VERIFY_ORDER_JOB), each shop's settings read once, the
        new rows, their timeline lines and their timer and call jobs written together."""
        live = [(shop, order) for shop, order in orders if shop.status != "uninstalled"]
        settings = {shop.id: self.settings_of(shop) for shop, _ in live}
        gathered = session.info[_GATHERED] = _Gathered()
        try:
            # An order's verification status mirrors its row: "none" is an order without one.
            stops = {order.id: (shop, order) for shop, order in live if stopping(order)}
            if stops:
                rows = await session.scalars(
                    select(Verification)
                    .where(Verification.order_id.in_(stops))
                    .order_by(Verification.order_id)
                    .with_for_update()
                )
                for row in rows:
                    shop, order = stops[row.order_id]
                    ctx = Context(row, order, shop, settings[shop.id])
                    await self.apply(session, ctx, OrderChanged(stop_reason(order)))
            starts = [
                (shop, order, settings[shop.id])
                for shop, order in live
                if order.verification_status == "none"
            ]
            await self._start(session, starts)
        finally:
            del session.info[_GATHERED]
        await queue_messages(session, self.queue, self.clock.now(), gathered.messages)
        await self.queue.enqueue(session, *gathered.jobs)
        if gathered.lines:
            await session.execute(insert(Activity.__table__), gathered.lines)

    async def handle_timer(self, job: ClaimedJob) -> None:
        async with self.db.transaction() as session:
            ctx = await self.load(session, job.payload["verification_id"])
            if ctx is not None:
                await self.apply(session, ctx, Timer(job.payload["seq"]))

    # Entry points ----------------------------------------------------------------------

    async def load(self, session: AsyncSession, verification_id: int) -> Context | None:
        """The verification, locked for this transaction, with its order, shop and settings;
        None when it is gone or its shop uninstalled the app."""
        return (await self.load_many(session, [verification_id])).get(verification_id)

    async def load_many(
        self, session: AsyncSession, verification_ids: Collection[int]
    ) -> dict[int, Context]:
        """`load` for a batch: the rows locked in one statement (in id order, as every batch
        locks them: no deadlock between workers), orders and shops read together."""
        rows = list(
            await session.scalars(
                select(Verification)
                .where(Verification.id.in_(set(verification_ids)))
                .order_by(Verification.id)
                .with_for_update()
            )
        )
        if not rows:
            return {}
        orders = await _by_id(session, Order, {row.order_id for row in rows})
        shops = await _by_id(session, Shop, {row.shop_id for row in rows})
        found = {}
        for row in rows:
            order, shop = orders.get(row.order_id), shops.get(row.shop_id)
            if order is None or shop is None or shop.status == "uninstalled":
                continue
            found[row.id] = Context(row, order, shop, self.settings_of(shop))
        return found

    async def apply(self, session: AsyncSession, ctx: Context, event: Event) -> VState:
        """Feed `event` to the flow; store the new state and its effects; return the state."""
        now = self.clock.now()
        before = ctx.state
        after, effects = step(before, event, ctx.settings, now)
        # Consent is read only when the step would message the customer (most steps do not);
        # opted out of that channel, the same step again skips the method.
        if any(isinstance(effect, SendMessage) for effect in effects):
            channels = await self._opted_out(session, ctx)
            if channels:
                before = replace(before, opted_out=channels)
                after, effects = step(before, event, ctx.settings, now)
        if after == before and not effects:
            return after
        row = ctx.row
        row.data = after.to_json()
        row.state = after.status
        row.method = after.method or row.method
        row.attempts = after.attempt
        row.next_action_at = after.timer_at if after.waiting else None
        row.version += 1
        row.updated_at = now
        ctx.order.verification_status = after.status
        if after.status != before.status:
            _LOGGER.info(
                "shop %s: order %s verification %s%s",
                ctx.shop.domain,
                ctx.order.name,
                after.status,
                f" ({after.reason})" if after.reason else "",
            )
        if after.reason:
            ctx.order.skip_reason = after.reason[:255]
        ctx.order.updated_at = now
        for effect in effects:
            await self._perform(session, ctx, effect, now)
        return after

    async def answer(self, verification_id: int, action: str, mode: str) -> VState | None:
        """A customer's (or the merchant's) decision, in its own transaction."""
        async with self.db.transaction() as session:
            ctx = await self.load(session, verification_id)
            return None if ctx is None else await self.apply(session, ctx, Answer(action, mode))

    async def missed_call(self, session: AsyncSession, shop_id: int, from_phone: str) -> list[int]:
        """Confirm the caller's pending order(s) per the shop's missed-call mode; the ids of
        the orders confirmed ([] when the number has none pending)."""
        now = self.clock.now()
        shop = await session.get(Shop, shop_id)
        if shop is None or shop.status == "uninstalled":
            return []
        settings = self.settings_of(shop)
        query = (
            select(Verification.id)
            .join(Order, Verification.order_id == Order.id)
            .where(
                Order.shop_id == shop_id,
                Order.phone == from_phone,
                Verification.state.in_(ANSWERABLE),
            )
            .order_by(Order.placed_at.desc(), Order.id.desc())
        )
        limit = 1
        if settings.fallback.missed_call.confirm_mode == "latest_3_in_30_days":
            query, limit = query.where(Order.placed_at >= now - MISSED_CALL_WINDOW), 3
        confirmed = []
        for verification_id in list(await session.scalars(query)):
            ctx = await self.load(session, verification_id)
            if ctx is None or "missed_call" not in ctx.state.methods:
                continue
            state = await self.apply(session, ctx, Answer("confirm", "missed_call"))
            if state.decided_by == "missed_call":
                confirmed.append(ctx.order.id)
            if len(confirmed) == limit:
                break
        return confirmed

    def reply_options(self, ctx: Context, channel: str) -> tuple[Option, ...]:
        """The answers the verification takes from a message on `channel`: its WhatsApp
        buttons (pressed, or typed as their digit or title) once its WhatsApp message went
        out and while an answer counts. Its SMS steps ask for no typed answer: they carry a
        link, a number for a missed call, or a code for the checkout page."""
        state = ctx.state
        if (
            channel != "whatsapp"
            or state.status not in ANSWERABLE
            or "whatsapp" not in state.methods
            or state.stage < state.methods.index("whatsapp")
        ):
            return ()
        section = ctx.settings.whatsapp
        titles = {
            "confirm": section.confirm_button,
            "cancel": section.cancel_button,
            "callback": section.callback_button,
        }
        return tuple(
            Option(action, titles[action], f"verify:{ctx.row.id}:{action}")
            for action in options("whatsapp", ctx.settings)
        )

    async def reply(self, session: AsyncSession, ctx: Context, action: str) -> VState:
        """The customer's answer by WhatsApp (the only channel whose replies it offers)."""
        return await self.apply(session, ctx, Answer(action, "whatsapp"))

    def not_understood(self, ctx: Context, count: int) -> None:
        """Keep how many "reply not understood" messages the customer got (at most two)."""
        ctx.row.data = replace(ctx.state, not_understood=count).to_json()
        ctx.row.version += 1
        ctx.row.updated_at = self.clock.now()

    async def wait_for_window(
        self, session: AsyncSession, ctx: Context, purpose: str, key: str
    ) -> datetime | None:
        """When a call or message about to go must wait for the calling window: its next
        start (the flow is told, so the attempt's timer moves), else None."""
        until = held_until(purpose, key, ctx.settings, self.clock.now())
        if until is not None:
            await self.apply(session, ctx, WindowClosed(purpose, key, until))
        return until

    async def send_after(
        self, session: AsyncSession, messages: list[Message]
    ) -> dict[int, datetime]:
        """The calling window start each verification message that must wait for it waits
        for, by message id: the shops read together, the verifications of those only."""
        refs = {m.id: ref for m in messages if (ref := message_ref(m.idempotency_key))}
        if not refs:
            return {}
        shops = await _by_id(session, Shop, {m.shop_id for m in messages if m.id in refs})
        now = self.clock.now()
        held = {}
        for message in messages:
            ref, shop = refs.get(message.id), shops.get(message.shop_id)
            if ref is None or shop is None or shop.status == "uninstalled":
                continue
            if held_until(ref[1], ref[2], self.settings_of(shop), now) is not None:
                held[message.id] = ref
        if not held:
            return {}
        contexts = await self.load_many(session, {ref[0] for ref in held.values()})
        found = {}
        for message_id, (verification_id, purpose, key) in held.items():
            ctx = contexts.get(verification_id)
            if ctx is not None:
                until = await self.wait_for_window(session, ctx, purpose, key)
                if until is not None:
                    found[message_id] = until
        return found

    async def send_failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        """The send job gave up on a message (see MessageFailed); others' messages pass."""
        ref = message_ref(message.idempotency_key)
        if ref is None:
            return
        verification_id, purpose, key = ref
        ctx = await self.load(session, verification_id)
        if ctx is not None:
            await self.apply(session, ctx, MessageFailed(purpose, key, code, permanent))

    async def _opted_out(self, session: AsyncSession, ctx: Context) -> frozenset[str]:
        """The channels the order's phone opted out of at the shop, as the send gate sees it:
        on a channel carried by a platform account, a keyword on its shared number counts.
        In a batch of starts, read for the whole batch when the first one asks."""
        key = (ctx.shop.id, ctx.order.phone)
        starting = session.info.get(_STARTING)
        if starting is None:
            return (await self._read_opted_out(session, [ctx]))[key]
        known = session.info.setdefault(_OPTED_OUT, {})
        if key not in known:
            known.update(await self._read_opted_out(session, [ctx, *starting]))
        return known[key]

    async def _read_opted_out(
        self, session: AsyncSession, contexts: list[Context]
    ) -> dict[tuple[int, str], frozenset[str]]:
        """`_opted_out` of each context's (shop, phone): each shop's accounts read once, the
        consents in two queries."""
        accounts = {}
        for ctx in contexts:
            if ctx.shop.id not in accounts:
                accounts[ctx.shop.id] = await shop_accounts(session, ctx.shop.id)
        asks = set()
        for ctx in contexts:
            for channel in set(CHANNELS.values()):
                account = selected(ctx.shop, accounts[ctx.shop.id], channel)
                line = None
                if account is not None and account.owner == PLATFORM:
                    line = line_of(account.provider, None)
                asks.add(Ask(ctx.shop.id, ctx.order.phone, channel, line))
        out = await opted_out_of(session, asks)
        found: dict[tuple[int, str], set[str]] = {}
        for ask in asks:
            channels = found.setdefault((ask.shop_id, ask.phone), set())
            if ask in out:
                channels.add(ask.channel)
        return {key: frozenset(channels) for key, channels in found.items()}

    def link(self, verification_id: int, now: datetime, hours: int) -> str:
        token = self.keys.link_token(verification_id, now + timedelta(hours=hours))
        return f"{self.public_url}/v/{token}"

    # Start -----------------------------------------------------------------------------

    async def _start(
        self, session: AsyncSession, starts: list[tuple[Shop, Order, ShopSettings]]
    ) -> None:
        """Start the verifications of new orders: their rows inserted by one statement,
        each order's first step, then the rows' and the orders' new states written by one
        statement each."""
        now = self.clock.now()
        begun = []
        for shop, order, settings in starts:
            if shop.status != "installed":
                detail = {"reason": "shop setup incomplete"}
                _record(session, order, "verification_not_started", "", now, detail)
            else:
                begun.append((shop, order, settings))
        if not begun:
            return
        table = Verification.__table__
        fresh = {"method": "", "state": PENDING, "attempts": 0, "data": {}, "version": 0}
        fresh["updated_at"] = now
        inserted = await session.execute(
            insert(table).returning(table.c.order_id, table.c.id),
            [
                {"shop_id": shop.id, "order_id": order.id, "created_at": now, **fresh}
                for shop, order, _ in begun
            ],
        )
        ids = dict(inserted.all())
        previous = await _previous_orders(session, [order for _, order, _ in begun])
        # Not in the session: the states are written below, all in one statement.
        contexts = [
            Context(
                Verification(id=ids[order.id], shop_id=shop.id, order_id=order.id, **fresh),
                order,
                shop,
                settings,
            )
            for shop, order, settings in begun
        ]
        session.info[_STARTING] = contexts
        for ctx in contexts:
            order, settings = ctx.order, ctx.settings
            facts = OrderFacts(
                amount=Decimal(order.total_amount),
                gateways=tuple(order.gateways),
                tags=tuple(order.tags),
                phone=order.phone,
                phone_problem=order.skip_reason,
                cancelled=order.cancelled_at is not None,
                financial_status=order.financial_status,
                placed_at=order.placed_at,
                previous_orders=previous[order.id],
            )
            otp = None
            if methods(settings)[0] == "otp":
                otp = self.keys.new_otp(ctx.row.id, settings.otp.code_length)
            await self.apply(session, ctx, Start(facts, otp))
            await asyncio.sleep(0)  # calls and sends due meanwhile go on time
        del session.info[_STARTING]
        session.info.pop(_OPTED_OUT, None)
        # The orders too: the webhook batch's new ones are not in the session.
        await write_back(
            session,
            [ctx.order for ctx in contexts],
            "verification_status",
            "skip_reason",
            "updated_at",
        )
        await write_back(
            session,
            [ctx.row for ctx in contexts],
            "method",
            "state",
            "attempts",
            "data",
            "next_action_at",
            "version",
            "updated_at",
        )

    # Effects ---------------------------------------------------------------------------

    async def _perform(
        self, session: AsyncSession, ctx: Context, effect: Effect, now: datetime
    ) -> None:
        vid, order, shop = ctx.row.id, ctx.order, ctx.shop
        if isinstance(effect, Record):
            _record(session, order, effect.kind, effect.mode, now, effect.detail)
            if effect.kind == "verification_confirmed":
                # The customer hears that the order is confirmed, if the shop sends that.
                confirmed = JourneyEvent(ORDER_CONFIRMED, order.shopify_order_id, "verification")
                await self.queue.enqueue(session, notify_job(shop.id, confirmed))
        elif isinstance(effect, NotifyMerchant):
            detail = {
                "alert": effect.alert,
                "order": order.name,
                "phone": order.phone,
                **effect.detail,
            }
            _record(session, order, "merchant_alert", effect.detail.get("mode", ""), now, detail)
            await self.queue.enqueue(
                session,
                *merchant_jobs(
                    ctx.settings.notifications, shop.id, effect.alert, order.shopify_order_id
                ),
            )
        elif isinstance(effect, StartTimer):
            await self._enqueue(
                session,
                NewJob(
                    TIMER_JOB,
                    {"verification_id": vid, "seq": effect.seq},
                    due_at=effect.at,
                    idempotency_key=f"verify:{vid}:timer:{effect.seq}",
                    shop_id=shop.id,
                ),
            )
        elif isinstance(effect, PlaceCall):
            await self._enqueue(
                session,
                NewJob(
                    CALL_JOB,
                    {"verification_id": vid, "call": effect.call},
                    idempotency_key=call_key(vid, effect.call),
                    shop_id=shop.id,
                ),
            )
        elif isinstance(effect, AddTags):
            await queue_tags(
                session,
                self.queue,
                order.id,
                shop.id,
                add=effect.tags,
                remove=effect.remove,
                mode=effect.mode,
                key=f"verify:{vid}:{'+'.join(effect.tags)}",
            )
        elif isinstance(effect, CancelOrder):
            await queue_cancel(
                session, self.queue, order.id, shop.id, mode=effect.mode, key=f"verify:{vid}"
            )
        elif isinstance(effect, SendMessage):
            await self._message(session, ctx, effect, now)

    async def _enqueue(self, session: AsyncSession, job: NewJob) -> None:
        """Enqueue a timer or call job now, or with the batch's others when a batch of
        starts gathers them (one statement for the batch)."""
        gathered = session.info.get(_GATHERED)
        if gathered is None:
            await self.queue.enqueue(session, job)
        else:
            gathered.jobs.append(job)

    async def _message(
        self, session: AsyncSession, ctx: Context, effect: SendMessage, now: datetime
    ) -> None:
        settings, order = ctx.settings, ctx.order
        details: dict[str, Any] = {}
        channel, sender, template = "sms", "", ""
        if effect.purpose == "whatsapp":
            section = settings.whatsapp
            channel = "whatsapp"
            body = self._fill(section.text, ctx)
            titles = {
                "confirm": section.confirm_button,
                "cancel": section.cancel_button,
                "callback": section.callback_button,
            }
            offered = options("whatsapp", settings)
            postbacks = [f"verify:{ctx.row.id}:{action}" for action in offered]
            if section.template_id:
                template = section.template_id
                params = await self._template_params(session, ctx, section.template_params)
                details = {"params": params, "postbacks": postbacks}
            else:
                details = {
                    "buttons": [
                        {"postback": postback, "title": titles[action]}
                        for postback, action in zip(postbacks, offered, strict=True)
                    ]
                }
        else:
            section, text, dlt_template, extra = self._sms(ctx, effect, now)
            sender = section.sender_id
            plain = section.encoding == "plain"
            body = self._fill(text, ctx, gsm7=plain, **extra)
            details = {
                "dlt_entity_id": section.dlt_entity_id,
                "dlt_template_id": dlt_template,
                "encoding": section.encoding,
            }
            if effect.otp_nonce:
                details["otp"] = {"nonce": effect.otp_nonce, "length": settings.otp.code_length}
        details["mode"] = _MODES.get(effect.purpose, effect.purpose)
        item = Outbound(
            shop_id=ctx.shop.id,
            channel=channel,
            to=order.phone,
            idempotency_key=message_key(ctx.row.id, effect.purpose, effect.key),
            body=body,
            sender=sender,
            order_id=order.id,
            customer_id=order.customer_id,
            template=template,
            details=details,
        )
        # A batch of starts queues its messages together, as it enqueues its jobs.
        gathered = session.info.get(_GATHERED)
        if gathered is None:
            await queue_messages(session, self.queue, now, [item])
        else:
            gathered.messages.append(item)

    async def _template_params(
        self, session: AsyncSession, ctx: Context, fields: list[str]
    ) -> list[str]:
        """The values of the order fields the merchant mapped the template's variables to."""
        order, shop = ctx.order, ctx.shop
        customer = None
        if "customer_name" in fields and order.customer_id is not None:
            customer = await session.get(Customer, order.customer_id)
        items: list[Any] = order.items or []
        values = {
            "order_name": order.name,
            "order_number": str(order.number),
            "amount": self.amount(ctx),
            "customer_name": customer.name if customer else "",
            "customer_phone": order.phone,
            "shop_name": shop.name or shop.domain,
            "city": order.city,
            "items": ", ".join(f"{i.get('title', '')} × {i.get('quantity', 1)}" for i in items),
            "item_count": str(sum(int(i.get("quantity", 1)) for i in items)),
        }
        # WhatsApp refuses an empty variable and one with a line break, a tab or more than
        # four spaces in a row: one line, and a dash for what the order does not know.
        return [" ".join(values[field].split()) or "-" for field in fields]

    def _sms(
        self, ctx: Context, effect: SendMessage, now: datetime
    ) -> tuple[Any, str, str, dict[str, str]]:
        """(section, template, DLT template id, placeholders) of an SMS purpose."""
        settings = ctx.settings
        if effect.purpose == "sms_link":
            section = settings.fallback.sms_link
            link = self.link(ctx.row.id, now, section.link_expiry_hours)
            return section, section.template, section.dlt_template_id, {"%link%": link}
        if effect.purpose == "otp":
            section = settings.otp
            link = self.link(ctx.row.id, now, 1)
            return section, section.template, section.dlt_template_id, {"%link%": link}
        section = settings.fallback.missed_call
        exophone = {"%exophone%": section.exophone}
        if effect.purpose == "missed_call":
            return section, section.template, section.dlt_template_id, exophone
        return (
            section,
            section.confirmation_template,
            section.confirmation_dlt_template_id,
            exophone,
        )

    def _fill(self, template: str, ctx: Context, *, gsm7: bool = False, **extra: str) -> str:
        """A template with the order's placeholders (%otp% stays: the send job fills it);
        `gsm7` for a plain SMS, which carries GSM-7 characters only."""
        values = {
            "%ordernumber%": str(ctx.order.number),
            "%ordername%": ctx.order.name,
            "%orderamount%": self.amount(ctx, gsm7=gsm7),
            **extra,
        }
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        return to_gsm7(template) if gsm7 else template

    def amount(self, ctx: Context, *, gsm7: bool = False) -> str:
        """The order's amount in the shop's language and country (en_IN: ₹1,499.00); with
        `gsm7`, a currency sign outside GSM-7 is spelt as its code (INR 1,499.00)."""
        amount, currency = Decimal(ctx.order.total_amount), ctx.order.currency
        locale = f"{language_of(ctx.shop, ctx.settings) or 'en'}_{ctx.shop.country or 'IN'}"
        try:
            text = format_currency(amount, currency, locale=locale)
        except (ValueError, LookupError):  # babel refuses unknown language-country pairs
            locale = "en"
            text = format_currency(amount, currency, locale=locale)
        if gsm7 and not is_gsm7(text):
            symbol = get_currency_symbol(currency, locale)
            text = " ".join(text.replace(symbol, f" {currency} ").split())
        return text


def postback_verification(button: str) -> int | None:
    """The verification a WhatsApp button's postback (`verify:{id}:{action}`) names."""
    prefix, _, rest = button.partition(":")
    vid, _, action = rest.partition(":")
    if prefix != "verify" or not vid.isdigit() or len(vid) > 18 or not action:
        return None
    return int(vid)


async def _previous_orders(session: AsyncSession, orders: list[Order]) -> dict[int, int]:
    """For each order, how many orders its phone placed at its shop before it: one read of
    the phones' orders, counted here."""
    phoned = [order for order in orders if order.phone]
    placed: dict[tuple[int, str], list[datetime]] = {}
    if phoned:
        found = await session.execute(
            select(Order.shop_id, Order.phone, Order.placed_at).where(
                Order.shop_id.in_({order.shop_id for order in phoned}),
                Order.phone.in_({order.phone for order in phoned}),
            )
        )
        for shop_id, phone, at in found:
            placed.setdefault((shop_id, phone), []).append(at)
    return {
        order.id: sum(at < order.placed_at for at in placed.get((order.shop_id, order.phone), []))
        for order in orders
    }


async def _by_id(session: AsyncSession, model: Any, ids: set[int]) -> dict[int, Any]:
    """Rows of `model` by id, read in one statement (those the session holds included)."""
    return {row.id: row for row in await session.scalars(select(model).where(model.id.in_(ids)))}


def _record(
    session: AsyncSession,
    order: Order,
    kind: str,
    mode: str,
    now: datetime,
    detail: dict[str, Any],
) -> None:
    """A line of the order's timeline, or one gathered with a batch's others (one INSERT)."""
    line = {
        "shop_id": order.shop_id,
        "order_id": order.id,
        "kind": kind,
        "mode": mode,
        "detail": detail,
        "created_at": now,
    }
    gathered = session.info.get(_GATHERED)
    if gathered is None:
        session.add(Activity(**line))
    else:
        gathered.lines.append(line)
