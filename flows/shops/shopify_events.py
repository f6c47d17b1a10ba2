"""What a Shopify event does to our records: orders, customers, fulfilments, uninstall, privacy.

One job per accepted webhook (and per order found by reconciliation) runs `handle`, or a
batch of them `handle_batch`; the verifications of the new orders start in the same
transaction. An order payload that cannot be used is recorded with the reason and skipped,
never retried; an event older than what we already hold (a stale retry) changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.conversations.shopify_consent import FROM_SHOPIFY, from_shopify, shopify_time
from flows.notifications.events import NOTIFYING_TOPICS, ORDER_CREATED, JourneyEvent
from flows.notifications.events import from_shopify as journey_events
from flows.notifications.job import notify_job
from flows.notifications.merchant import NEW_ORDER, merchant_jobs
from flows.shops import config as shop_config
from flows.shops import privacy
from flows.shops.settings import ShopSettings
from flows.verification.runtime import Verifier, stopping, verification_job
from providers.shopify.orders import OrderData, normalize_phone, parse_order
from storage.db import Database, dialect_insert
from storage.jobs import ClaimedJob, JobQueue, NewJob, PermanentJobError
from storage.models import Activity, Customer, Job, Order, Shop
from storage.types import json_value

_LOGGER = logging.getLogger(__name__)

WEBHOOK_JOB = "shopify.webhook"
ORDER_TOPICS = {"orders/create", "orders/updated", "orders/cancelled"}
# The columns texts are fitted to (the mapped attributes' own lookups are slow).
_ORDERS, _CUSTOMERS = Order.__table__.c, Customer.__table__.c
# A customer's fields no order has spoken of yet.
_NO_NEWS = {
    "name": "",
    "email": "",
    "shopify_customer_id": None,
    "sms_consent": "unknown",
    "consent_updated_at": None,
}
_URL_LENGTH = _ORDERS.status_url.type.length
# What a new order's INSERT writes (the id is the database's).
_ORDER_KEYS = [column.key for column in _ORDERS if column.key not in ("id", "_sentinel")]


class ShopifyEvents:
    def __init__(self, db: Database, clock: Clock, queue: JobQueue, verifier: Verifier) -> None:
        self.db = db
        self.clock = clock
        self.queue = queue
        self.verifier = verifier

    async def handle(self, job: ClaimedJob) -> None:
        topic = job.payload["topic"]
        payload = _body(job)
        triggered_at = _when(job.payload.get("triggered_at"))
        async with self.db.transaction() as session:
            if topic == "shop/redact":
                await self._redact_shop(session, payload)
                return
            shop = await _event_shop(session, job.payload.get("shop_id"), payload)
            if shop is None:
                _LOGGER.info("shopify %s for a shop we do not hold; nothing to do", topic)
                return
            if topic == "customers/redact":
                await self._redact_customer(session, shop, payload)
            elif topic == "customers/data_request":
                await self._record_data_request(session, shop, payload)
            elif shop.status == "uninstalled":
                _LOGGER.info("shopify %s for uninstalled shop %s ignored", topic, shop.domain)
            elif topic in ORDER_TOPICS:
                await self._apply_orders(session, [(shop, payload, triggered_at)])
            elif topic.startswith("fulfillments/"):
                await self._record_fulfillment(session, shop, topic, payload)
                await self._notify(session, shop, topic, payload)
            elif topic in NOTIFYING_TOPICS:
                await self._notify(session, shop, topic, payload)
            elif topic == "customers/update":
                await self._update_customer(session, shop, payload)
            elif topic == "app/uninstalled":
                await self._uninstall(session, shop)

    async def handle_batch(self, jobs: list[ClaimedJob]) -> list[BaseException | None]:
        """Order events of a batch in one transaction; the rest, or a failed batch, one by one."""
        together = [
            job
            for job in jobs
            if job.payload["topic"] in ORDER_TOPICS and job.payload.get("shop_id") is not None
        ]
        outcome: dict[int, BaseException | None] = {}
        if together:
            try:
                await self._orders_together(together)
                outcome |= dict.fromkeys((job.id for job in together), None)
            except Exception as exc:
                _LOGGER.warning("batch of %d orders failed (%s); one by one", len(together), exc)
        for job in jobs:
            if job.id not in outcome:
                try:
                    await self.handle(job)
                    outcome[job.id] = None
                except Exception as exc:
                    outcome[job.id] = exc
        return [outcome[job.id] for job in jobs]

    async def _orders_together(self, jobs: list[ClaimedJob]) -> None:
        async with self.db.transaction() as session:
            shop_ids = {job.payload["shop_id"] for job in jobs}
            shops = {
                shop.id: shop
                for shop in await session.scalars(select(Shop).where(Shop.id.in_(shop_ids)))
                if shop.status != "uninstalled"
            }
            await self._apply_orders(
                session,
                [
                    (shop, _body(job), _when(job.payload.get("triggered_at")))
                    for job in jobs
                    if (shop := shops.get(job.payload["shop_id"])) is not None
                ],
            )

    async def _apply_orders(
        self,
        session: AsyncSession,
        events: list[tuple[Shop, dict[str, Any], datetime | None]],
    ) -> None:
        """Order events of shops that have the app: orders and customers written together,
        then the verifications of new orders started (cancelled or paid ones stopped)."""
        now = self.clock.now()
        parsed: list[tuple[Shop, OrderData | ValueError, datetime | None]] = []
        for shop, payload, triggered_at in events:
            try:
                data: OrderData | ValueError = parse_shop_order(shop, payload)
            except ValueError as exc:
                data = exc
            parsed.append((shop, data, triggered_at))
            # A batch's loops do not otherwise yield: calls and sends due meanwhile (in the
            # same event loop) go at their slots, not after the batch.
            await asyncio.sleep(0)
        book = OrderBook(session, self.verifier.settings_of)
        for shop in {id(shop): shop for shop, _, _ in parsed}.values():
            mine = [d for s, d, _ in parsed if s is shop and isinstance(d, OrderData)]
            await book.preload(shop.id, {d.shopify_order_id for d in mine})
        for shop, data, triggered_at in parsed:
            if isinstance(data, ValueError):
                _reject(session, shop, data, now)
            else:
                await apply_order_data(session, shop, data, now, "webhook", triggered_at, book)
            await asyncio.sleep(0)
        await book.write(now)
        await self.verifier.orders_changed(session, [(shop, o) for shop, o, _ in book.verify])
        await self.queue.enqueue(session, *book.notification_jobs)

    async def _record_fulfillment(
        self, session: AsyncSession, shop: Shop, topic: str, payload: dict[str, Any]
    ) -> None:
        order = await session.scalar(
            select(Order).where(
                Order.shop_id == shop.id, Order.shopify_order_id == str(payload.get("order_id"))
            )
        )
        if order is None:
            _LOGGER.info("%s for unknown order %s", topic, payload.get("order_id"))
            return
        detail = {
            key: payload.get(key)
            for key in ("status", "shipment_status", "tracking_company", "tracking_number")
        } | {"tracking_url": (payload.get("tracking_urls") or [None])[0]}
        session.add(_activity(shop.id, order.id, "fulfillment", self.clock.now(), detail))

    async def _notify(
        self, session: AsyncSession, shop: Shop, topic: str, payload: dict[str, Any]
    ) -> None:
        """Queue the journey events the webhook announces that the shop notifies."""
        notifications = shop_config.load(shop).notifications
        wanted = [e for e in journey_events(topic, payload) if notifications.wanted(e.kind)]
        await self.queue.enqueue(session, *(notify_job(shop.id, event) for event in wanted))

    async def _update_customer(
        self, session: AsyncSession, shop: Shop, payload: dict[str, Any]
    ) -> None:
        sms = payload.get("sms_marketing_consent")
        sms = sms if isinstance(sms, dict) else {}
        consent = sms.get("state")
        customers = list(
            await session.scalars(
                select(Customer).where(
                    Customer.shop_id == shop.id,
                    Customer.shopify_customer_id == str(payload.get("id")),
                )
            )
        )
        # The consent is the phone's: the one Shopify holds, else the ones we know them by.
        raw = payload.get("phone")
        phone = normalize_phone(raw, shop.country or None) if isinstance(raw, str) else None
        for number in {phone} if phone else {customer.phone for customer in customers}:
            await from_shopify(
                session,
                self.clock.now(),
                shop_id=shop.id,
                phone=number,
                state=consent if isinstance(consent, str) else None,
                updated_at=shopify_time(sms.get("consent_updated_at")),
                reference=f"shopify:customer:{payload.get('id')}",
            )
        for customer in customers:
            name = " ".join(filter(None, (payload.get("first_name"), payload.get("last_name"))))
            customer.name = _fit(_CUSTOMERS.name, name) or customer.name
            customer.email = _fit(_CUSTOMERS.email, payload.get("email") or "") or customer.email
            if consent:
                customer.sms_consent = _fit(_CUSTOMERS.sms_consent, consent)
                customer.consent_updated_at = self.clock.now()

    async def _uninstall(self, session: AsyncSession, shop: Shop) -> None:
        """Stop all work for the shop at once: no token, no queued job runs."""
        now = self.clock.now()
        shop.status = "uninstalled"
        shop.updated_at = now
        shop.credentials = ""
        await session.execute(
            update(Job)
            .where(Job.shop_id == shop.id, Job.status == "queued")
            .values(status="dead", last_error="shop uninstalled the app", finished_at=now)
        )
        session.add(_activity(shop.id, None, "app_uninstalled", now, {}))
        _LOGGER.warning("shop %s uninstalled the app; its work is stopped", shop.domain)

    async def _record_data_request(
        self, session: AsyncSession, shop: Shop, payload: dict[str, Any]
    ) -> None:
        now = self.clock.now()
        exported = await privacy.export(session, shop, payload, now)
        detail = {
            "data_request": exported.id,
            "shopify_request_id": exported.shopify_request_id,
            "customers_held": len(exported.document["customers"]),
            "orders_held": len(exported.document["orders"]),
        }
        session.add(_activity(shop.id, None, "privacy_data_request", now, detail))

    async def _redact_customer(
        self, session: AsyncSession, shop: Shop, payload: dict[str, Any]
    ) -> None:
        now = self.clock.now()
        erased = await privacy.redact(session, shop, payload, now)
        detail = {"customers": len(erased.customers), "orders": len(erased.orders)}
        session.add(_activity(shop.id, None, "privacy_redacted", now, detail))

    async def _redact_shop(self, session: AsyncSession, payload: dict[str, Any]) -> None:
        domain = str(payload.get("shop_domain", "")).lower()
        result = await session.execute(delete(Shop).where(Shop.domain == domain))
        _LOGGER.warning("shop/redact for %s: %d shop records deleted", domain, result.rowcount)


class OrderBook:
    """The orders and customers one transaction touches, written together.

    A batch of events reads its known orders with one query per shop; its customers are
    upserted with one statement (each phone's fields merged as its orders come, then with
    the row's in SQL), its new orders and its timeline lines inserted with one more each
    (`write`), instead of a round trip per order. The orders whose verification starts or
    may stop are gathered, to be handed to the verifier together.
    """

    def __init__(
        self, session: AsyncSession, settings_of: Callable[[Shop], ShopSettings] = shop_config.load
    ) -> None:
        self.session = session
        self._settings_of = settings_of
        self.orders: dict[tuple[int, str], Order | None] = {}
        # (shop, order, new): a new order's verification starts, a running one may stop.
        self.verify: list[tuple[Shop, Order, bool]] = []
        self.notification_jobs: list[NewJob] = []
        # Not in the session: `write` inserts them, and the lines of their timelines.
        self._new: list[Order] = []
        self._lines: list[tuple[Order, str, dict[str, Any]]] = []
        # What the orders say of each (shop, phone)'s customer, and the orders it is theirs.
        self._customers: dict[tuple[int, str], dict[str, Any]] = {}
        self._buyers: list[tuple[Order, tuple[int, str]]] = []
        self._settings: dict[int, ShopSettings] = {}

    @property
    def verification_jobs(self) -> list[NewJob]:
        """`verify` as VERIFY_ORDER_JOBs, for a caller that leaves it to the job."""
        return [job for _, order, new in self.verify if (job := verification_job(order, new))]

    def settings(self, shop: Shop) -> ShopSettings:
        """The shop's settings, read once per transaction (parsing them is not free)."""
        if shop.id not in self._settings:
            self._settings[shop.id] = self._settings_of(shop)
        return self._settings[shop.id]

    async def preload(self, shop_id: int, order_ids: set[str]) -> None:
        rows = await self.session.scalars(
            select(Order).where(Order.shop_id == shop_id, Order.shopify_order_id.in_(order_ids))
        )
        self.orders |= dict.fromkeys(((shop_id, o) for o in order_ids), None)
        self.orders |= {(shop_id, o.shopify_order_id): o for o in rows}

    def buyer(self, order: Order, data: OrderData, now: datetime) -> None:
        """The order's customer (its phone's at the shop) is told what the order says of
        them: a name, email or consent given replaces the one held."""
        if data.phone is None:
            order.customer_id = None
            return
        key = (order.shop_id, data.phone)
        fields = self._customers.setdefault(key, dict(_NO_NEWS))
        self._buyers.append((order, key))
        buyer = data.customer
        if buyer is None:
            return
        fields["name"] = buyer.name or fields["name"]
        fields["email"] = buyer.email or fields["email"]
        fields["shopify_customer_id"] = buyer.shopify_customer_id
        if buyer.sms_consent:
            fields["sms_consent"], fields["consent_updated_at"] = buyer.sms_consent, now

    def add(self, order: Order) -> None:
        self._new.append(order)
        self.orders[(order.shop_id, order.shopify_order_id)] = order

    def line(self, order: Order, kind: str, detail: dict[str, Any]) -> None:
        self._lines.append((order, kind, detail))

    async def write(self, now: datetime) -> None:
        """Upsert the customers (one statement, their ids read back), insert the new
        orders (one more) and the timeline lines (one more); the changes of orders read
        here go with the session's flush."""
        if self._customers:
            ids = await _upsert_customers(self.session, self._customers, now)
            for order, key in self._buyers:
                order.customer_id = ids[key]
            self._customers, self._buyers = {}, []
        if self._new:
            table = Order.__table__
            inserted = await self.session.execute(
                insert(table).returning(table.c.shop_id, table.c.shopify_order_id, table.c.id),
                [{key: getattr(order, key) for key in _ORDER_KEYS} for order in self._new],
            )
            ids = {(shop_id, order_id): id_ for shop_id, order_id, id_ in inserted}
            for order in self._new:
                order.id = ids[(order.shop_id, order.shopify_order_id)]
            self._new = []
        if self._lines:
            await self.session.execute(
                insert(Activity.__table__),
                [
                    _line(order.shop_id, order.id, kind, now, detail)
                    for order, kind, detail in self._lines
                ],
            )
            self._lines = []


async def apply_order(
    session: AsyncSession,
    shop: Shop,
    payload: dict[str, Any],
    now: datetime,
    source: str,
    triggered_at: datetime | None = None,
    book: OrderBook | None = None,
) -> Order | None:
    """Create or update our order from a Shopify order payload, written when this returns;
    None if unusable or stale."""
    try:
        data = parse_shop_order(shop, payload)
    except ValueError as exc:
        _reject(session, shop, exc, now)
        return None
    book = book or OrderBook(session)
    await book.preload(shop.id, {data.shopify_order_id})
    order = await apply_order_data(session, shop, data, now, source, triggered_at, book)
    await book.write(now)
    return order


async def apply_order_data(
    session: AsyncSession,
    shop: Shop,
    data: OrderData,
    now: datetime,
    source: str,
    triggered_at: datetime | None,
    book: OrderBook,
) -> Order | None:
    """`apply_order` for a payload already parsed, its order preloaded in `book`; a new
    order, and the customer, are written by `book.write`."""
    order = book.orders[(shop.id, data.shopify_order_id)]
    version = data.updated_at or triggered_at
    if order is not None and _is_stale(version, order.shopify_updated_at):
        _LOGGER.info("stale update of order %s ignored", data.name)
        return None
    buyer = data.customer
    if buyer is not None and buyer.sms_consent in FROM_SHOPIFY and (buyer.phone or data.phone):
        await from_shopify(
            session,
            now,
            shop_id=shop.id,
            phone=buyer.phone or data.phone or "",
            state=buyer.sms_consent,
            updated_at=buyer.sms_consent_updated_at,
            reference=f"shopify:order:{data.shopify_order_id}",
        )
    kind = "order_updated"
    if order is None:
        kind = "order_received"
        order = Order(
            shop_id=shop.id,
            shopify_order_id=data.shopify_order_id,
            verification_status="none",
            created_at=now,
        )
        book.add(order)
    if data.cancelled_at and order.cancelled_at is None:
        kind = "order_cancelled"
    book.buyer(order, data, now)
    order.name, order.number = data.name, data.number
    order.phone = data.phone or ""
    order.skip_reason = data.phone_problem
    order.total_amount, order.currency = data.total_amount, data.currency
    order.payment_method, order.gateways = data.payment_method, data.gateways
    order.financial_status = data.financial_status
    order.city = data.city
    order.items = [
        {"title": item.title, "quantity": item.quantity, "price": item.price}
        for item in data.items
    ]
    order.status_url = data.status_url
    order.fulfillment_status = data.fulfillment_status
    order.tags = data.tags
    order.cancelled_at = data.cancelled_at
    order.placed_at = data.placed_at
    order.shopify_updated_at = version or order.shopify_updated_at
    order.updated_at = now
    detail = {"source": source, "financial_status": data.financial_status}
    if data.phone_problem:
        detail["skipped"] = data.phone_problem
    book.line(order, kind, detail)
    if kind == "order_received":
        _LOGGER.info(
            "shop %s: order %s received (%s %s %s)",
            shop.domain,
            data.name,
            data.payment_method,
            data.total_amount,
            data.currency,
        )
    # A shop still setting up verifies nothing.
    if shop.status == "installed" and (kind == "order_received" or stopping(order)):
        book.verify.append((shop, order, kind == "order_received"))
    if kind == "order_received":
        notifications = book.settings(shop).notifications
        if notifications.wanted(ORDER_CREATED):
            event = JourneyEvent(ORDER_CREATED, data.shopify_order_id, "shopify")
            book.notification_jobs.append(notify_job(shop.id, event))
        book.notification_jobs += merchant_jobs(
            notifications, shop.id, NEW_ORDER, data.shopify_order_id
        )
    return order


def _reject(session: AsyncSession, shop: Shop, exc: ValueError, now: datetime) -> None:
    _LOGGER.warning("order payload from %s rejected: %s", shop.domain, exc)
    session.add(_activity(shop.id, None, "order_rejected", now, {"error": str(exc)}))


def parse_shop_order(shop: Shop, payload: dict[str, Any]) -> OrderData:
    # Without a known shop country only numbers written with +country code are usable.
    return _fitted(parse_order(payload, default_region=shop.country or "ZZ"))


def _fit(column: Any, value: str) -> str:
    """`value` as `column` (a String(n)) can hold it: PostgreSQL refuses longer values and
    NUL characters, which would fail the event's job until it is dead; SQLite takes both."""
    return _no_nul(value)[: column.type.length]


def _no_nul(value: str) -> str:
    return value.replace("\x00", "")


def _fitted(data: OrderData) -> OrderData:
    """`data` with every text cut to its column: a long checkout field never costs the order.
    An amount is never cut (that would change it): one too long is refused."""
    if len(data.total_amount) > _ORDERS.total_amount.type.length:
        raise ValueError(f"total_price: longer than {_ORDERS.total_amount.type.length} characters")
    customer = data.customer
    if customer is not None:
        fitted = (
            _fit(_CUSTOMERS.name, customer.name),
            _fit(_CUSTOMERS.email, customer.email),
            customer.sms_consent and _fit(_CUSTOMERS.sms_consent, customer.sms_consent),
        )
        if fitted != (customer.name, customer.email, customer.sms_consent):
            name, email, consent = fitted
            customer = dataclasses.replace(customer, name=name, email=email, sms_consent=consent)
    return dataclasses.replace(
        data,
        name=_fit(_ORDERS.name, data.name),
        financial_status=_fit(_ORDERS.financial_status, data.financial_status),
        fulfillment_status=_fit(_ORDERS.fulfillment_status, data.fulfillment_status),
        city=_fit(_ORDERS.city, data.city),
        gateways=[_no_nul(gateway) for gateway in data.gateways],
        tags=[tag for tag in map(_no_nul, data.tags) if tag],
        items=[
            dataclasses.replace(item, title=_no_nul(item.title)) if "\x00" in item.title else item
            for item in data.items
        ],
        customer=customer,
        # A URL cut short leads nowhere: one too long is left out.
        status_url=data.status_url if len(data.status_url) <= _URL_LENGTH else "",
    )


def _body(job: ClaimedJob) -> dict[str, Any]:
    """The webhook's JSON object; a malformed one can never succeed."""
    try:
        payload = json_value(job.payload["body"])
    except ValueError as exc:
        raise PermanentJobError(f"webhook body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PermanentJobError("webhook body is not a JSON object")
    return payload


def _when(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment) if moment else None


def _is_stale(incoming: datetime | None, held: datetime | None) -> bool:
    return incoming is not None and held is not None and incoming < held


async def _upsert_customers(
    session: AsyncSession, customers: dict[tuple[int, str], dict[str, Any]], now: datetime
) -> dict[tuple[int, str], int]:
    """Create or update customers in one statement (a batch running beside this one may be
    writing the same customer, a repeat buyer: ON CONFLICT lets both go on, and a field
    only replaces the row's when given); their ids by (shop id, phone)."""
    stmt = _customers_upsert(session.get_bind().dialect.name)
    # In one order, so that two batches writing the same customers never deadlock.
    rows = [
        {"shop_id": shop_id, "phone": phone, **fields, "created_at": now}
        for (shop_id, phone), fields in sorted(customers.items())
    ]
    return {(shop_id, phone): id_ for shop_id, phone, id_ in await session.execute(stmt, rows)}


@functools.cache
def _customers_upsert(dialect: str) -> Any:
    """The statement of `_upsert_customers`, built once."""
    table = Customer.__table__
    stmt = dialect_insert(dialect, table)
    new, held = stmt.excluded, table.c
    return stmt.on_conflict_do_update(
        index_elements=[held.shop_id, held.phone],
        set_={
            "name": case((new.name != "", new.name), else_=held.name),
            "email": case((new.email != "", new.email), else_=held.email),
            "shopify_customer_id": func.coalesce(
                new.shopify_customer_id, held.shopify_customer_id
            ),
            "sms_consent": case(
                (new.consent_updated_at.is_not(None), new.sms_consent), else_=held.sms_consent
            ),
            "consent_updated_at": func.coalesce(new.consent_updated_at, held.consent_updated_at),
        },
    ).returning(held.shop_id, held.phone, held.id)


async def _event_shop(
    session: AsyncSession, shop_id: int | None, payload: dict[str, Any]
) -> Shop | None:
    if shop_id is not None:
        return await session.get(Shop, shop_id)
    domain = str(payload.get("shop_domain", "")).lower()
    return await session.scalar(select(Shop).where(Shop.domain == domain)) if domain else None


def _activity(
    shop_id: int, order_id: int | None, kind: str, now: datetime, detail: dict[str, Any]
) -> Activity:
    return Activity(**_line(shop_id, order_id, kind, now, detail))


def _line(
    shop_id: int, order_id: int | None, kind: str, now: datetime, detail: dict[str, Any]
) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "order_id": order_id,
        "kind": kind,
        "mode": "shopify",
        "detail": detail,
        "created_at": now,
    }
