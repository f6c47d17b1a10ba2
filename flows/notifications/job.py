"""The notification job: one journey event of one order, decided and applied.

The event's job is queued by the webhook that announced it (Shopify's or the shipment
webhook), in the transaction that accepted it. The job gathers the facts (the events the order
had, its customer's consents, the values of the tokens), asks the pure decision, and applies
it in one transaction: the event goes on the order's timeline (`notification_event`), each send
is queued with the key `notify:{order}:{event}:{channel}` (however many webhooks announce an
event, one message per order, event and channel), each skip is recorded with its reason. An
event behind the journey is recorded `notification_stale` and sends nothing; one due in quiet
hours is deferred to their end and decided again then.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency, get_currency_symbol
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.messaging import queue_message
from flows.notifications.decide import Decision, Facts, decide, fall_back
from flows.notifications.events import JourneyEvent
from flows.notifications.whatsapp import TemplateChecks, TemplateState
from flows.shops import config as shop_config
from providers.sms import is_gsm7, measure
from storage.db import Database
from storage.jobs import ClaimedJob, Deferred, JobQueue, NewJob
from storage.models import Activity, Consent, Customer, Order, Shop

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


def notify_job(shop_id: int, event: JourneyEvent) -> NewJob:
    return NewJob(NOTIFY_JOB, {"shop_id": shop_id, "event": event.payload()}, shop_id=shop_id)


def message_key(order_id: int, event: str, channel: str) -> str:
    return f"notify:{order_id}:{event}:{channel}"


def key_event(idempotency_key: str | None) -> str:
    """The journey event of a notification's message key; "" for other messages."""
    parts = (idempotency_key or "").split(":")
    return parts[2] if len(parts) == 4 and parts[0] == "notify" else ""


class Notifier:
    """The NOTIFY_JOB handler."""

    def __init__(
        self, db: Database, clock: Clock, queue: JobQueue, templates: TemplateChecks
    ) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.templates = templates

    async def handle(self, job: ClaimedJob) -> None:
        event = JourneyEvent.from_payload(job.payload["event"])
        template = await self._template(job.payload["shop_id"], event.kind)
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, job.payload["shop_id"])
            if shop is None or shop.status == "uninstalled":
                return
            order = await find_order(session, shop.id, event.order)
            if order is None:
                _LOGGER.info(
                    "journey event %s for an unknown order of %s", event.kind, shop.domain
                )
                session.add(_activity(shop.id, None, "notification_unknown_order", now, event))
                return
            settings = shop_config.load(shop)
            facts = await gather(session, shop, order, event, settings.ivr.timezone)
            if event.kind in facts.held:
                _LOGGER.info("journey event %s of order %s announced again", event.kind, order.id)
                return
            decision = decide(event.kind, facts, settings.notifications, now)
            if decision.wait_until is not None:
                raise Deferred((decision.wait_until - now).total_seconds(), "quiet hours")
            whatsapp = next((s for s in decision.sends if s.channel == "whatsapp"), None)
            if whatsapp is not None and template is not None and template.problem:
                decision = fall_back(event.kind, facts, settings.notifications, decision)
                fallback = next((s.channel for s in decision.sends if s.channel == "sms"), "")
                alert = {
                    "channel": "whatsapp",
                    "template_id": whatsapp.template_id,
                    "status": template.status,
                    "reason": template.problem,
                    "fallback": fallback,
                }
                session.add(_activity(shop.id, order.id, FALLBACK_KIND, now, event, alert))
                _LOGGER.warning(
                    "shop %s: WhatsApp template %s cannot be used (%s); fallback %s",
                    shop.domain,
                    whatsapp.template_id,
                    template.status,
                    fallback or "none",
                )
            sender = settings.notifications.sms_sender_id
            await self._apply(session, shop, order, event, decision, sender)

    async def _template(self, shop_id: int, event: str) -> TemplateState | None:
        """The live state of the event's WhatsApp template, when the event goes by WhatsApp;
        asked before the transaction, which holds the order's lock."""
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
            if shop is None:
                return None
            settings = shop_config.load(shop).notifications
            whatsapp = settings.notice(event).whatsapp
            if not whatsapp.active:
                return None
            accepted = settings.whatsapp_charge_accepted
            return await self.templates.check(session, shop, whatsapp.template_id, accepted)

    async def _apply(
        self,
        session: AsyncSession,
        shop: Shop,
        order: Order,
        event: JourneyEvent,
        decision: Decision,
        sms_sender: str,
    ) -> None:
        now = self.clock.now()
        if decision.stale:
            session.add(_activity(shop.id, order.id, STALE_KIND, now, event))
            return
        session.add(_activity(shop.id, order.id, EVENT_KIND, now, event))
        for skip in decision.skips:
            extra = {"channel": skip.channel, "reason": skip.reason}
            session.add(_activity(shop.id, order.id, SKIPPED_KIND, now, event, extra))
        for send in decision.sends:
            message = await queue_message(
                session,
                self.queue,
                now,
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
            )
            message.credits = measure(message.body).segments if send.channel == "sms" else 1


async def find_order(
    session: AsyncSession, shop_id: int, ref: str, *, lock: bool = True
) -> Order | None:
    """The order a journey event names: its Shopify id, or its name (with or without #).
    `lock`: one event of an order at a time, so the second sees the first's record."""
    name = ref if ref.startswith("#") else f"#{ref}"
    query = (
        select(Order)
        .where(
            Order.shop_id == shop_id,
            or_(Order.shopify_order_id == ref, Order.name == name, Order.name == ref),
        )
        .order_by(Order.id)
        .limit(1)
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def gather(
    session: AsyncSession, shop: Shop, order: Order, event: JourneyEvent, zone: str
) -> Facts:
    held = await session.scalars(
        select(Activity.detail).where(Activity.order_id == order.id, Activity.kind == EVENT_KIND)
    )
    consents = await session.execute(
        select(Consent.channel, Consent.state).where(
            Consent.shop_id == shop.id, Consent.phone == order.phone
        )
    )
    customer = await session.get(Customer, order.customer_id) if order.customer_id else None
    return Facts(
        held=frozenset(detail["event"] for detail in held),
        phone=order.phone,
        consents={channel: state for channel, state in consents} if order.phone else {},
        values=token_values(shop, order, customer, event),
        zone=zone,
    )


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
