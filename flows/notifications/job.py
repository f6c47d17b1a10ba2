"""The notification job: journey events of orders, decided and applied a batch at a time.

An event's job is queued by the webhook that announced it (Shopify's or the shipment
webhook), in the transaction that accepted it. A batch of jobs gathers the facts together (the
orders, locked; the events they had, their customers' consents, the values of the tokens),
asks the pure decision for each event, and applies them all in one transaction: each event
goes on its order's timeline (`notification_event`), each send is queued with the key
`notify:{order}:{event}:{channel}` (however many webhooks announce an event, one message per
order, event and channel), each skip is recorded with its reason. An event behind the journey
is recorded `notification_stale` and sends nothing; one due in quiet hours is deferred to
their end and decided again then.

A WhatsApp notification refused by the provider for being outside the customer's 24-hour
window, or for its template, falls back to the event's SMS when the shop allows it (the
Notifier is told as the owner of the message), with the `notification_fallback` alert.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency, get_currency_symbol
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.messaging import Outbound, queue_messages
from flows.notifications.decide import Decision, Facts, Send, decide, fall_back
from flows.notifications.events import JourneyEvent
from flows.notifications.whatsapp import TemplateChecks, TemplateState
from flows.shops import config as shop_config
from flows.shops.settings import ShopSettings
from providers.base import OUTSIDE_SESSION_WINDOW, TEMPLATE_NOT_APPROVED
from providers.sms import is_gsm7, measure
from storage.db import Database
from storage.jobs import ClaimedJob, Deferred, JobQueue, NewJob
from storage.models import Activity, Consent, Customer, Message, Order, Shop

_LOGGER = logging.getLogger(__name__)

NOTIFY_JOB = "notification.event"
EVENT_KIND, STALE_KIND, SKIPPED_KIND, FALLBACK_KIND = (
    "notification_event",
    "notification_stale",
    "notification_skipped",
    # An alert: the merchant's bot pushes it (a WhatsApp template that cannot be used).
    "notification_fallback",
)
MODE = "notification"
# A WhatsApp notification the provider refused for these falls back to SMS.
FALLBACK_CODES = frozenset({OUTSIDE_SESSION_WINDOW, TEMPLATE_NOT_APPROVED})


def notify_job(shop_id: int, event: JourneyEvent) -> NewJob:
    return NewJob(NOTIFY_JOB, {"shop_id": shop_id, "event": event.payload()}, shop_id=shop_id)


def message_key(order_id: int, event: str, channel: str) -> str:
    return f"notify:{order_id}:{event}:{channel}"


def key_event(idempotency_key: str | None) -> str:
    """The journey event of a notification's message key; "" for other messages."""
    parts = (idempotency_key or "").split(":")
    return parts[2] if len(parts) == 4 and parts[0] == "notify" else ""


class Notifier:
    """The NOTIFY_JOB handler, a batch at a time; and the owner (MessageOwner) told about
    the notification messages the provider refused."""

    def __init__(
        self, db: Database, clock: Clock, queue: JobQueue, templates: TemplateChecks
    ) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.templates = templates

    async def handle(self, job: ClaimedJob) -> None:
        """One notification job: the batch of one."""
        [error] = await self.handle_batch([job])
        if error is not None:
            raise error

    async def handle_batch(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        """NOTIFY_JOB, a batch at a time: each shop's settings read once and each WhatsApp
        template asked once, the facts of every order read together, every decision applied
        in one transaction. A batch that fails runs again one job at a time: a poisoned job
        fails alone."""
        try:
            return await self._batch(jobs)
        except Exception:
            if len(jobs) == 1:
                raise
            _LOGGER.exception("a batch of %d notification jobs failed: one at a time", len(jobs))
        errors: list[BaseException | None] = []
        for job in jobs:
            try:
                errors += await self._batch([job])
            except Exception as exc:
                errors.append(exc)
        return errors

    async def _batch(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        errors: list[BaseException | None] = [None] * len(jobs)
        events = [JourneyEvent.from_payload(job.payload["event"]) for job in jobs]
        refs = [(job.payload["shop_id"], e.order) for job, e in zip(jobs, events, strict=True)]
        shop_ids = {shop_id for shop_id, _ in refs}
        async with self.db.sessions() as session:
            settings = {
                shop.id: shop_config.load(shop) for shop in (await _shops(session, shop_ids))
            }
            # Asked before the transaction, which holds the orders' locks.
            templates = await self._templates(session, settings, refs, events)
        now = self.clock.now()
        async with self.db.transaction() as session:
            shops = {shop.id: shop for shop in await _shops(session, shop_ids)}
            orders = await find_orders(session, refs)
            gathered = await Gathered.read(session, set(orders.values()))
            plan = Plan()
            # In the order the events were announced: the second of one order sees the first.
            for i in sorted(range(len(jobs)), key=lambda i: jobs[i].id):
                shop = shops.get(refs[i][0])
                if shop is None or shop.status == "uninstalled" or shop.id not in settings:
                    continue
                template = templates.get((shop.id, events[i].kind))
                if isinstance(template, BaseException):
                    errors[i] = template
                    continue
                order = orders.get(refs[i])
                if order is None:
                    _LOGGER.info(
                        "journey event %s for an unknown order of %s", events[i].kind, shop.domain
                    )
                    unknown = "notification_unknown_order"
                    plan.note(_activity(shop.id, None, unknown, now, events[i]))
                    continue
                errors[i] = _decide(
                    plan, gathered, shop, order, settings[shop.id], events[i], template, now
                )
            await plan.apply(session, self.queue, now)
        return errors

    async def _templates(
        self,
        session: AsyncSession,
        settings: dict[int, ShopSettings],
        refs: list[tuple[int, str]],
        events: list[JourneyEvent],
    ) -> dict[tuple[int, str], TemplateState | BaseException]:
        """The live state of each (shop, event) WhatsApp template the batch may send, asked
        once; a provider that cannot answer now is the error of that key's jobs (they retry)."""
        found: dict[tuple[int, str], TemplateState | BaseException] = {}
        for (shop_id, _), event in zip(refs, events, strict=True):
            key = (shop_id, event.kind)
            if key in found or shop_id not in settings:
                continue
            notifications = settings[shop_id].notifications
            whatsapp = notifications.notice(event.kind).whatsapp
            if not whatsapp.active:
                continue
            shop = await session.get(Shop, shop_id)
            accepted = notifications.whatsapp_charge_accepted
            try:
                found[key] = await self.templates.check(
                    session, shop, whatsapp.template_id, accepted
                )
            except Exception as exc:
                found[key] = exc
        return found

    # MessageOwner --------------------------------------------------------------------------

    async def send_after(
        self, session: AsyncSession, messages: list[Message]
    ) -> dict[int, datetime]:
        return {}  # quiet hours were waited for before the message was queued

    async def send_failed(
        self, session: AsyncSession, message: Message, code: str, permanent: bool
    ) -> None:
        """A notification's WhatsApp message refused for being outside the customer's 24-hour
        window, or for its template: the event's SMS instead when the shop allows it (and it
        is not going already), and the `notification_fallback` alert. Others pass."""
        kind = key_event(message.idempotency_key)
        if not kind or message.channel != "whatsapp" or code not in FALLBACK_CODES:
            return
        shop = await session.get(Shop, message.shop_id)
        order = await session.get(Order, message.order_id) if message.order_id else None
        if order is None or shop is None or shop.status == "uninstalled":
            return
        gathered = await Gathered.read(session, {order})
        event = gathered.announced.get(order.id, {}).get(kind) or JourneyEvent(
            kind, order.shopify_order_id, MODE
        )
        settings = shop_config.load(shop)
        facts = gathered.facts(shop, order, event, settings.ivr.timezone)
        sms = await session.scalar(
            select(Message.id).where(Message.idempotency_key == message_key(order.id, kind, "sms"))
        )
        decision = Decision()
        if sms is None:
            whatsapp = Decision(sends=(Send("whatsapp", template_id=message.template),))
            decision = fall_back(kind, facts, settings.notifications, whatsapp)
        now = self.clock.now()
        plan = Plan()
        reason = message.error or code
        plan.note(_fallback(shop, order, event, message.template, code, reason, decision, now))
        plan.sends(shop, order, event, decision, settings.notifications.sms_sender_id, now)
        await plan.apply(session, self.queue, now)


def _decide(
    plan: Plan,
    gathered: Gathered,
    shop: Shop,
    order: Order,
    settings: ShopSettings,
    event: JourneyEvent,
    template: TemplateState | None,
    now: datetime,
) -> Deferred | None:
    """One event's decision, added to `plan`; a deferral when it is due in quiet hours."""
    facts = gathered.facts(shop, order, event, settings.ivr.timezone)
    if event.kind in facts.held:
        _LOGGER.info("journey event %s of order %s announced again", event.kind, order.id)
        return None
    decision = decide(event.kind, facts, settings.notifications, now)
    if decision.wait_until is not None:
        return Deferred((decision.wait_until - now).total_seconds(), "quiet hours")
    if decision.stale:
        plan.note(_activity(shop.id, order.id, STALE_KIND, now, event))
        return None
    whatsapp = next((s for s in decision.sends if s.channel == "whatsapp"), None)
    if whatsapp is not None and template is not None and template.problem:
        decision = fall_back(event.kind, facts, settings.notifications, decision)
        plan.note(
            _fallback(
                shop,
                order,
                event,
                whatsapp.template_id,
                template.status,
                template.problem,
                decision,
                now,
            )
        )
    gathered.took(order.id, event)
    plan.note(_activity(shop.id, order.id, EVENT_KIND, now, event))
    plan.sends(shop, order, event, decision, settings.notifications.sms_sender_id, now)
    return None


def _fallback(
    shop: Shop,
    order: Order,
    event: JourneyEvent,
    template_id: str,
    status: str,
    reason: str,
    decision: Decision,
    now: datetime,
) -> Activity:
    fallback = next((s.channel for s in decision.sends if s.channel == "sms"), "")
    _LOGGER.warning(
        "shop %s: WhatsApp template %s cannot be used for order %s (%s); fallback %s",
        shop.domain,
        template_id,
        order.id,
        status,
        fallback or "none",
    )
    alert = {
        "channel": "whatsapp",
        "template_id": template_id,
        "status": status,
        "reason": reason,
        "fallback": fallback,
    }
    return _activity(shop.id, order.id, FALLBACK_KIND, now, event, alert)


class Plan:
    """What a batch's decisions write, in one go: timeline rows, then the messages (one query
    for known keys, one flush, one insert of their send jobs)."""

    def __init__(self) -> None:
        self.activities: list[Activity] = []
        self.outbound: list[Outbound] = []

    def note(self, activity: Activity) -> None:
        self.activities.append(activity)

    def sends(
        self,
        shop: Shop,
        order: Order,
        event: JourneyEvent,
        decision: Decision,
        sms_sender: str,
        now: datetime,
    ) -> None:
        for skip in decision.skips:
            extra = {"channel": skip.channel, "reason": skip.reason}
            self.note(_activity(shop.id, order.id, SKIPPED_KIND, now, event, extra))
        for send in decision.sends:
            self.outbound.append(
                Outbound(
                    shop_id=shop.id,
                    channel=send.channel,
                    to=order.phone,
                    idempotency_key=message_key(order.id, event.kind, send.channel),
                    body=send.body,
                    sender=sms_sender if send.channel == "sms" else "",
                    order_id=order.id,
                    customer_id=order.customer_id,
                    template=send.template_id,
                    details={
                        "mode": MODE,
                        "params": list(send.params),
                        "dlt_entity_id": send.dlt_entity_id,
                        "dlt_template_id": send.dlt_template_id,
                    },
                    credits=measure(send.body).segments if send.channel == "sms" else 1,
                )
            )

    async def apply(self, session: AsyncSession, queue: JobQueue, now: datetime) -> None:
        session.add_all(self.activities)
        await queue_messages(session, queue, now, self.outbound)


@dataclasses.dataclass
class Gathered:
    """The facts of a batch's orders: the events each had, the consents of their phones,
    their customers."""

    announced: dict[int, dict[str, JourneyEvent]]  # order id -> event -> as announced
    consents: dict[tuple[int, str], dict[str, str]]  # (shop id, phone) -> channel -> state
    customers: dict[int, Customer]

    @classmethod
    async def read(cls, session: AsyncSession, orders: Iterable[Order]) -> Gathered:
        orders = list(orders)
        ids = [order.id for order in orders]
        announced: dict[int, dict[str, JourneyEvent]] = {order_id: {} for order_id in ids}
        for order_id, detail in await session.execute(
            select(Activity.order_id, Activity.detail).where(
                Activity.order_id.in_(ids), Activity.kind == EVENT_KIND
            )
        ):
            announced[order_id][detail["event"]] = _announced(detail)
        consents: dict[tuple[int, str], dict[str, str]] = {}
        phones = {order.phone for order in orders if order.phone}
        shop_ids = {order.shop_id for order in orders}
        for shop_id, phone, channel, state in await session.execute(
            select(Consent.shop_id, Consent.phone, Consent.channel, Consent.state).where(
                Consent.shop_id.in_(shop_ids), Consent.phone.in_(phones)
            )
        ):
            consents.setdefault((shop_id, phone), {})[channel] = state
        customer_ids = {order.customer_id for order in orders if order.customer_id}
        customers = {
            customer.id: customer
            for customer in await session.scalars(
                select(Customer).where(Customer.id.in_(customer_ids))
            )
        }
        return cls(announced, consents, customers)

    def facts(self, shop: Shop, order: Order, event: JourneyEvent, zone: str) -> Facts:
        customer = self.customers.get(order.customer_id) if order.customer_id else None
        return Facts(
            held=frozenset(self.announced.get(order.id, ())),
            phone=order.phone,
            consents=self.consents.get((shop.id, order.phone), {}) if order.phone else {},
            values=token_values(shop, order, customer, event),
            zone=zone,
        )

    def took(self, order_id: int, event: JourneyEvent) -> None:
        """`event` is on the order's timeline now (for the batch's later events)."""
        self.announced.setdefault(order_id, {})[event.kind] = event


def _announced(detail: dict[str, Any]) -> JourneyEvent:
    """The event a `notification_event` timeline row records."""
    fields = {field.name for field in dataclasses.fields(JourneyEvent)}
    payload = {"order": "", "source": ""} | {k: v for k, v in detail.items() if k in fields}
    return JourneyEvent.from_payload(payload | {"kind": detail["event"]})


async def _shops(session: AsyncSession, ids: set[int]) -> list[Shop]:
    return list(await session.scalars(select(Shop).where(Shop.id.in_(ids))))


async def find_orders(
    session: AsyncSession, refs: Iterable[tuple[int, str]], *, lock: bool = True
) -> dict[tuple[int, str], Order]:
    """The orders journey events name, by (shop id, ref): the Shopify id, or the order's
    name (with or without #); the first order when several match. `lock` (in id order, so
    no two batches deadlock): one event of an order at a time, so the second sees the
    first's record."""
    refs = set(refs)
    if not refs:
        return {}
    names = {ref if ref.startswith("#") else f"#{ref}" for _, ref in refs}
    query = (
        select(Order)
        .where(
            Order.shop_id.in_({shop_id for shop_id, _ in refs}),
            or_(
                Order.shopify_order_id.in_({ref for _, ref in refs}),
                Order.name.in_(names | {ref for _, ref in refs}),
            ),
        )
        .order_by(Order.id)
    )
    found: dict[tuple[int, str], Order] = {}
    for order in await session.scalars(query.with_for_update() if lock else query):
        for ref in (order.shopify_order_id, order.name, order.name.removeprefix("#")):
            found.setdefault((order.shop_id, ref), order)
    return {ref: found[ref] for ref in refs if ref in found}


async def find_order(
    session: AsyncSession, shop_id: int, ref: str, *, lock: bool = True
) -> Order | None:
    """The order a journey event names (see `find_orders`)."""
    return (await find_orders(session, [(shop_id, ref)], lock=lock)).get((shop_id, ref))


def token_values(
    shop: Shop, order: Order, customer: Customer | None, event: JourneyEvent
) -> dict[str, str]:
    """The value of each token for `order` and `event` ("" where it has none)."""
    name = customer.name.strip() if customer is not None else ""
    first, _, last = name.partition(" ")
    items = [i for i in order.items if isinstance(i, dict)]
    return {
        "ordername": order.name,
        "ordernumber": str(order.number),
        "orderamount": amount_text(order.total_amount, order.currency, shop.country),
        "shop": shop.name,
        "firstname": first,
        "lastname": last.strip(),
        "fullname": name,
        "phone": order.phone,
        "city": order.city,
        "items": ", ".join(f"{i.get('title', '')} x {i.get('quantity', 1)}" for i in items),
        "quantity": str(sum(int(i.get("quantity") or 0) for i in items)),
        "paymentmethod": order.payment_method,
        "orderstatusurl": order.status_url,
        "carrier": event.carrier,
        "awb": event.awb,
        "trackingurl": event.tracking_url,
        "reason": event.reason,
        "refundamount": event.refund_amount,
    }


def amount_text(amount: str, currency: str, country: str) -> str:
    """An amount as a plain SMS carries it: INR 1,499.00 (a sign outside GSM-7 as its code)."""
    locale = f"en_{country or 'IN'}"
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return f"{currency} {amount}"
    try:
        text = format_currency(value, currency, locale=locale)
    except (ValueError, LookupError):
        locale = "en"
        text = format_currency(value, currency, locale=locale)
    if not is_gsm7(text):
        symbol = get_currency_symbol(currency, locale)
        text = " ".join(text.replace(symbol, f" {currency} ").split())
    return text


def _activity(
    shop_id: int,
    order_id: int | None,
    kind: str,
    now: Any,
    event: JourneyEvent,
    extra: dict[str, Any] | None = None,
) -> Activity:
    detail = {k: v for k, v in event.payload().items() if v} | {"event": event.kind}
    return Activity(
        shop_id=shop_id,
        order_id=order_id,
        kind=kind,
        mode=MODE,
        detail=detail | (extra or {}),
        created_at=now,
    )
