"""A customer's data under Shopify's privacy webhooks: exported for the merchant
(customers/data_request) or erased wherever the product holds it (customers/redact).

The customer is whoever the webhook names by Shopify customer id, phone or email, and the
customers of the orders it lists (`orders_requested`, `orders_to_redact`), with all their
orders. Erasing reaches the customers, their orders' phone and city, messages, calls,
missed calls, the orders' timelines, exports made for earlier requests, and the jobs that
carried their data (raw webhook bodies, inbound events) or quote it in an error.

Consents are the exception that keeps a phone: an opt-out must go on being honoured after the
customer is forgotten (a later order from the same phone must not be messaged), so an
opted-out consent stays, with its phone and time, as a suppression entry. What is not needed
for that goes: opted-in consents, the history of opting in, and what caused each change (the
inbound message, the request) on the opt-outs kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, and_, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from flows.conversations.consent import OPTED_OUT
from providers.shopify.orders import normalize_phone
from storage.db import Database
from storage.models import (
    Activity,
    Call,
    Consent,
    ConsentEvent,
    Customer,
    DataRequest,
    Job,
    Message,
    MissedCall,
    Order,
    Shop,
    Verification,
)

REDACTED = "redacted"
JOB_REDACTED = "redacted: it held the data of a customer whose data was erased"
# Shorter ids would match too many unrelated rows in the jobs' first, textual sift.
_SHORTEST_NEEDLE = 5
_JOB_BATCH = 500


@dataclass
class Subject:
    """A customer as the product holds them: rows, and what identifies them in free text."""

    customers: list[Customer] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    # Shopify's ids of the customer and of their orders, as their webhooks carry them.
    shopify_ids: set[str] = field(default_factory=set)

    @property
    def order_ids(self) -> list[int]:
        return [order.id for order in self.orders]


@dataclass(frozen=True)
class Requested:
    """Whom a privacy webhook names."""

    shopify_customer_id: str
    email: str
    phone: str  # E.164, "" if none or unusable
    order_ids: list[str]

    @classmethod
    def of(cls, shop: Shop, payload: dict[str, Any], orders_key: str) -> Requested:
        customer = payload.get("customer")
        customer = customer if isinstance(customer, dict) else {}
        raw_phone = customer.get("phone")
        phone = normalize_phone(str(raw_phone), shop.country or None) if raw_phone else None
        orders = payload.get(orders_key)
        return cls(
            shopify_customer_id=_text(customer.get("id")),
            email=_text(customer.get("email")).lower(),
            phone=phone or "",
            order_ids=[_text(o) for o in orders if _text(o)] if isinstance(orders, list) else [],
        )


async def find_subject(session: AsyncSession, shop: Shop, requested: Requested) -> Subject:
    """The customers and orders of the shop that `requested` names, with all their orders."""
    named = []
    if requested.shopify_customer_id:
        named.append(Customer.shopify_customer_id == requested.shopify_customer_id)
    if requested.phone:
        named.append(Customer.phone == requested.phone)
    if requested.email:
        named.append(func.lower(Customer.email) == requested.email)
    customers = (
        list(
            await session.scalars(select(Customer).where(Customer.shop_id == shop.id, or_(*named)))
        )
        if named
        else []
    )
    phones = {c.phone for c in customers} | ({requested.phone} - {""})
    order_match = [Order.shopify_order_id.in_(requested.order_ids)]
    if customers:
        order_match.append(Order.customer_id.in_([c.id for c in customers]))
    if phones:
        order_match.append(Order.phone.in_(phones))
    orders = list(
        await session.scalars(
            select(Order).where(Order.shop_id == shop.id, or_(*order_match)).order_by(Order.id)
        )
    )
    # The customers of the listed orders, and the orders of those customers.
    known = {c.id for c in customers}
    more = {o.customer_id for o in orders if o.customer_id is not None} - known
    if more:
        customers += list(await session.scalars(select(Customer).where(Customer.id.in_(more))))
        seen = {o.id for o in orders}
        orders += [
            o
            for o in await session.scalars(
                select(Order).where(Order.shop_id == shop.id, Order.customer_id.in_(more))
            )
            if o.id not in seen
        ]
    subject = Subject(customers=customers, orders=orders)
    subject.phones = (
        {c.phone for c in customers} | {o.phone for o in orders} | {requested.phone}
    ) - {""}
    subject.emails = ({c.email.lower() for c in customers} | {requested.email}) - {""}
    subject.shopify_ids = (
        {c.shopify_customer_id for c in customers if c.shopify_customer_id}
        | {o.shopify_order_id for o in orders}
        | {requested.shopify_customer_id}
        | set(requested.order_ids)
    ) - {""}
    return subject


async def export(
    session: AsyncSession,
    shop: Shop,
    payload: dict[str, Any],
    now: datetime,
) -> DataRequest:
    """Record the customer's data for the merchant to pass on (customers/data_request)."""
    requested = Requested.of(shop, payload, "orders_requested")
    subject = await find_subject(session, shop, requested)
    request = payload.get("data_request")
    request_id = _text(request.get("id")) if isinstance(request, dict) else ""
    document = {
        "data_request": {"id": request_id, "received_at": now.isoformat()},
        "shop": shop.domain,
        "requested": _requested_body(requested),
        **await _customer_data(session, shop, subject),
    }
    row = DataRequest(
        shop_id=shop.id,
        shopify_request_id=request_id[:64],
        shopify_customer_id=requested.shopify_customer_id[:64],
        email=requested.email[:255],
        phone=requested.phone,
        document=document,
        received_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def redact(
    session: AsyncSession, shop: Shop, payload: dict[str, Any], now: datetime
) -> Subject:
    """Erase the customer's data (customers/redact); orders keep the shop's figures."""
    subject = await find_subject(session, shop, Requested.of(shop, payload, "orders_to_redact"))
    for customer in subject.customers:
        customer.phone = f"{REDACTED}-{customer.id}"
        customer.name = customer.email = ""
        customer.shopify_customer_id = None
    for order in subject.orders:
        order.phone = order.city = ""
        # Why an order was skipped may quote the number it could not use.
        order.skip_reason = REDACTED if order.skip_reason else ""
    ids, phones = subject.order_ids, subject.phones
    await session.execute(
        update(Message)
        .where(
            Message.shop_id == shop.id,
            or_(
                Message.order_id.in_(ids),
                Message.to_phone.in_(phones),
                Message.from_phone.in_(phones),
            ),
        )
        .values(body="", to_phone=REDACTED, from_phone=REDACTED, error="")
    )
    await session.execute(
        update(Call)
        .where(Call.shop_id == shop.id, or_(Call.order_id.in_(ids), Call.to_phone.in_(phones)))
        .values(to_phone=REDACTED, error="")
    )
    await session.execute(
        update(MissedCall)
        .where(MissedCall.shop_id == shop.id, MissedCall.from_phone.in_(phones))
        .values(from_phone=REDACTED)
    )
    await session.execute(update(Activity).where(Activity.order_id.in_(ids)).values(detail={}))
    await _redact_consents(session, shop, phones)
    await session.execute(delete(DataRequest).where(*_exports_of(shop, subject)))
    await _redact_jobs(session, shop, subject, now)
    return subject


async def _redact_consents(session: AsyncSession, shop: Shop, phones: set[str]) -> None:
    """Keep only what honours an opt-out (see the module's docstring)."""
    for model in (Consent, ConsentEvent):
        await session.execute(
            delete(model).where(
                model.shop_id == shop.id, model.phone.in_(phones), model.state != OPTED_OUT
            )
        )
    await session.execute(
        update(ConsentEvent)
        .where(ConsentEvent.shop_id == shop.id, ConsentEvent.phone.in_(phones))
        .values(reference="")
    )


def _exports_of(shop: Shop, subject: Subject) -> list[Any]:
    return [
        DataRequest.shop_id == shop.id,
        or_(
            DataRequest.shopify_customer_id.in_(subject.shopify_ids),
            DataRequest.phone.in_(subject.phones),
            DataRequest.email.in_(subject.emails),
        ),
    ]


async def _redact_jobs(session: AsyncSession, shop: Shop, subject: Subject, now: datetime) -> None:
    """Empty the payload of every job that carried the customer's data, and the error of
    every job that quotes it. Jobs not yet run are given up (dead): their data is gone.

    Jobs are sifted by text in SQL (any id, phone or email appears in the payload or the
    error), then each candidate is read to confirm it is about this customer, so an id that
    happens to appear inside another number changes nothing.
    """
    needles = sorted(
        n
        for n in (
            *subject.phones,
            *(p.lstrip("+") for p in subject.phones),
            *subject.emails,
            *subject.shopify_ids,
        )
        if len(n) >= _SHORTEST_NEEDLE
    )
    if not needles:
        return
    payload_text, error = cast(Job.payload, Text), Job.last_error
    mentions = or_(*(payload_text.contains(n, autoescape=True) for n in needles))
    quotes = or_(*(error.contains(n, autoescape=True) for n in needles))
    after = 0
    while True:
        rows = (
            await session.execute(
                select(Job.id, Job.status, Job.payload, Job.last_error)
                .where(
                    or_(Job.shop_id == shop.id, Job.shop_id.is_(None)),
                    or_(mentions, quotes),
                    Job.id > after,
                )
                .order_by(Job.id)
                .limit(_JOB_BATCH)
            )
        ).all()
        for job_id, status, payload, last_error in rows:
            carried = _mentions(payload, subject, shop.country)
            quoted = any(n in last_error for n in needles)
            if not (carried or quoted):
                continue
            values: dict[str, Any] = {"last_error": JOB_REDACTED} if quoted else {}
            if carried:
                values["payload"] = {"redacted": True}
                if status == "queued":
                    values |= {"status": "dead", "finished_at": now, "last_error": JOB_REDACTED}
            await session.execute(update(Job).where(Job.id == job_id).values(**values))
        if len(rows) < _JOB_BATCH:
            return
        after = rows[-1][0]


def _mentions(value: Any, subject: Subject, country: str) -> bool:
    """True if the JSON `value` (a job payload; webhook bodies inside it are read too) holds
    the customer's Shopify id or one of their orders', a phone of theirs in any spelling, or
    an email of theirs."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "order_id", "customer_id") and _text(item) in subject.shopify_ids:
                return True
            if _mentions(item, subject, country):
                return True
        return False
    if isinstance(value, list):
        return any(_mentions(item, subject, country) for item in value)
    if not isinstance(value, str):
        return False
    if value.startswith(("{", "[")):
        try:
            return _mentions(orjson.loads(value), subject, country)
        except orjson.JSONDecodeError:
            pass
    if value.lower() in subject.emails or value in subject.phones:
        return True
    digits = sum(c.isdigit() for c in value)
    return 6 <= digits <= 20 and normalize_phone(value, country or None) in subject.phones


async def _customer_data(session: AsyncSession, shop: Shop, subject: Subject) -> dict[str, Any]:
    ids, phones = subject.order_ids, subject.phones
    names = {order.id: order.name for order in subject.orders}
    timelines: dict[int, list[dict[str, Any]]] = {order_id: [] for order_id in ids}
    for activity in await session.scalars(
        select(Activity)
        .where(Activity.order_id.in_(ids))
        .order_by(Activity.created_at, Activity.id)
    ):
        timelines[activity.order_id].append(
            {
                "kind": activity.kind,
                "mode": activity.mode,
                "detail": activity.detail,
                "at": activity.created_at.isoformat(),
            }
        )
    verifications = {
        v.order_id: v
        for v in await session.scalars(select(Verification).where(Verification.order_id.in_(ids)))
    }
    messages = await session.scalars(
        select(Message)
        .where(
            Message.shop_id == shop.id,
            or_(
                Message.order_id.in_(ids),
                and_(Message.direction == "out", Message.to_phone.in_(phones)),
                and_(Message.direction == "in", Message.from_phone.in_(phones)),
            ),
        )
        .order_by(Message.created_at, Message.id)
    )
    calls = await session.scalars(
        select(Call)
        .where(Call.shop_id == shop.id, or_(Call.order_id.in_(ids), Call.to_phone.in_(phones)))
        .order_by(Call.created_at, Call.id)
    )
    missed = await session.scalars(
        select(MissedCall)
        .where(MissedCall.shop_id == shop.id, MissedCall.from_phone.in_(phones))
        .order_by(MissedCall.received_at, MissedCall.id)
    )
    return {
        "customers": [_customer_body(c) for c in subject.customers],
        "orders": [
            _order_body(o, verifications.get(o.id), timelines[o.id]) for o in subject.orders
        ],
        "messages": [_message_body(m, names.get(m.order_id or 0)) for m in messages],
        "calls": [_call_body(c, names.get(c.order_id or 0)) for c in calls],
        "missed_calls": [
            {
                "from_phone": m.from_phone,
                "to_phone": m.to_phone,
                "received_at": m.received_at.isoformat(),
            }
            for m in missed
        ],
        "consents": [
            {
                "phone": e.phone,
                "channel": e.channel,
                "state": e.state,
                "source": e.source,
                "at": e.created_at.isoformat(),
            }
            for e in await session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.shop_id == shop.id, ConsentEvent.phone.in_(phones))
                .order_by(ConsentEvent.created_at, ConsentEvent.id)
            )
        ],
    }


def _requested_body(requested: Requested) -> dict[str, Any]:
    return {
        "customer": {
            "id": requested.shopify_customer_id,
            "email": requested.email,
            "phone": requested.phone,
        },
        "orders": requested.order_ids,
    }


def _customer_body(customer: Customer) -> dict[str, Any]:
    return {
        "shopify_customer_id": customer.shopify_customer_id,
        "phone": customer.phone,
        "name": customer.name,
        "email": customer.email,
        "sms_consent": customer.sms_consent,
        "whatsapp_consent": customer.whatsapp_consent,
        "consent_updated_at": _time(customer.consent_updated_at),
        "created_at": customer.created_at.isoformat(),
    }


def _order_body(
    order: Order, verification: Verification | None, timeline: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": order.name,
        "shopify_order_id": order.shopify_order_id,
        "placed_at": order.placed_at.isoformat(),
        "phone": order.phone,
        "city": order.city,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "payment_method": order.payment_method,
        "financial_status": order.financial_status,
        "fulfillment_status": order.fulfillment_status,
        "cancelled_at": _time(order.cancelled_at),
        "tags": order.tags,
        "items": order.items,
        "verification": None
        if verification is None
        else {
            "method": verification.method,
            "state": verification.state,
            "attempts": verification.attempts,
            "status": order.verification_status,
        },
        "timeline": timeline,
    }


def _message_body(message: Message, order: str | None) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "direction": message.direction,
        "to_phone": message.to_phone,
        "from_phone": message.from_phone,
        "body": message.body,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "order": order,
    }


def _call_body(call: Call, order: str | None) -> dict[str, Any]:
    return {
        "to_phone": call.to_phone,
        "from_phone": call.from_phone,
        "status": call.status,
        "input_digits": call.input_digits,
        "duration_seconds": call.duration_seconds,
        "created_at": call.created_at.isoformat(),
        "ended_at": _time(call.ended_at),
        "order": order,
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value).strip()


@dataclass(frozen=True)
class ExportRow:
    id: int
    shopify_request_id: str
    customer: dict[str, str]
    orders: list[str]
    received_at: datetime


async def exports(db: Database, shop_id: int, limit: int) -> list[ExportRow]:
    """The shop's data request exports, newest first."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(DataRequest)
            .where(DataRequest.shop_id == shop_id)
            .order_by(DataRequest.received_at.desc(), DataRequest.id.desc())
            .limit(limit)
        )
        return [_export_row(row) for row in rows]


async def export_document(db: Database, shop_id: int, export_id: int) -> dict[str, Any] | None:
    """One export of the shop; None if the shop has none with this id."""
    async with db.sessions() as session:
        row = await session.scalar(
            select(DataRequest).where(DataRequest.shop_id == shop_id, DataRequest.id == export_id)
        )
    return None if row is None else row.document


def _export_row(row: DataRequest) -> ExportRow:
    requested = row.document.get("requested", {})
    return ExportRow(
        row.id,
        row.shopify_request_id,
        {"id": row.shopify_customer_id, "email": row.email, "phone": row.phone},
        list(requested.get("orders", [])),
        row.received_at,
    )
