"""The merchant's reports: orders (with totals and one card per order), calls, messages and
missed calls of one shop (seed 000, "Records and reports").

Every query reads the given shop's rows only. Lists are newest first, a page at a time behind
an opaque cursor (the last row's time and id). A report covers at most seven days; without a
range it covers the seven days up to now. Days are the shop's: a date, or a time without an
offset, is read in the shop's time zone.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select

from clock import Clock
from flows.shops.config import shop_zone
from providers.shopify.orders import normalize_phone
from storage.db import Database
from storage.models import Activity, Call, Message, MissedCall, Order, Shop

MAX_RANGE = timedelta(days=7)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

VERIFICATION_STATUSES = frozenset(
    {"pending", "confirmed", "cancelled", "callback_requested", "unverified", "skipped"}
)
TOTALS = ("confirmed", "cancelled", "callback_requested", "pending")

# The query parameters each report accepts, besides `from`, `to`, `limit` and `cursor`.
ORDER_FILTERS = frozenset({"customer", "order", "status"})
CALL_FILTERS = frozenset({"customer", "agent", "order", "direction", "input"})
MESSAGE_FILTERS = frozenset({"customer", "order", "status"})
MISSED_CALL_FILTERS = frozenset({"customer", "order"})
_PAGING = frozenset({"from", "to", "limit", "cursor"})

# The calls table records only the outbound verification calls.
CALL_DIRECTIONS = ("outbound", "inbound")

# Order numbers are 32-bit integers in the database: longer digit runs are matched as names only.
_ORDER_NUMBER = re.compile(r"#?([0-9]{1,9})")

T = TypeVar("T")
RowT = TypeVar("RowT", Call, Message)


class FilterError(ValueError):
    """Report filters were refused; `problems` maps each bad query parameter to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class Filters:
    """What one page of a report shows. `until` is inclusive; phones are E.164; `zone` is the
    shop's, the one its days are read and shown in."""

    since: datetime
    until: datetime
    limit: int = DEFAULT_LIMIT
    after: tuple[datetime, int] | None = None
    customer: str | None = None
    agent: str | None = None
    order: str | None = None
    status: str | None = None
    direction: str | None = None
    input_digits: str | None = None
    zone: str = "UTC"


@dataclass(frozen=True)
class OrderRef:
    name: str
    number: int


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class OrderReport:
    page: Page[Order]
    totals: dict[str, int]


@dataclass(frozen=True)
class OrderCard:
    """One order with everything that happened to it, oldest first."""

    order: Order
    timeline: list[Activity]
    calls: list[Call]
    messages: list[Message]


def parse_filters(
    params: Mapping[str, str],
    accepted: frozenset[str],
    *,
    country: str,
    zone: str,
    now: datetime,
    statuses: Collection[str] | None = None,
) -> Filters:
    """Read a report's query parameters; every problem found is raised in one `FilterError`.

    Args:
        accepted: the report's own filters (e.g. `ORDER_FILTERS`).
        country: the shop's country, the region of phones given without `+`.
        zone: the shop's IANA time zone, of dates and of times given without an offset.
        statuses: the values `status` may take; None accepts any.
    """
    problems: dict[str, str] = {}
    for name in sorted(set(params) - accepted - _PAGING):
        problems[name] = "is not a filter of this report"
    given = {name: params[name].strip() for name in accepted & set(params) if params[name].strip()}
    values: dict[str, Any] = {}
    for name in ("customer", "agent"):
        if name in given:
            values[name] = _phone(given[name], country)
            if values[name] is None:
                problems[name] = "is not a phone number"
    for name in ("order", "status", "direction"):
        values[name] = given.get(name)
    values["input_digits"] = given.get("input")
    if statuses is not None and values["status"] not in (None, *statuses):
        problems["status"] = f"must be one of: {', '.join(sorted(statuses))}"
    if values["direction"] not in (None, *CALL_DIRECTIONS):
        problems["direction"] = f"must be one of: {', '.join(CALL_DIRECTIONS)}"
    limit = _limit(params.get("limit"), problems)
    after = _cursor(params.get("cursor"), problems)
    since, until = _window(params.get("from"), params.get("to"), ZoneInfo(zone), now, problems)
    if problems:
        raise FilterError(problems)
    return Filters(since, until, limit=limit, after=after, zone=zone, **values)


def _phone(raw: str, country: str) -> str | None:
    found = normalize_phone(raw, country or None)
    if found is None and raw.isdigit():
        found = normalize_phone("+" + raw, None)  # international digits without the '+'
    return found


def _limit(raw: str | None, problems: dict[str, str]) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        problems["limit"] = f"must be a whole number from 1 to {MAX_LIMIT}"
    return limit


def _cursor(raw: str | None, problems: dict[str, str]) -> tuple[datetime, int] | None:
    if not raw:
        return None
    try:
        return decode_cursor(raw)
    except ValueError:
        problems["cursor"] = "is not a cursor given by this API"
        return None


def _window(
    raw_from: str | None,
    raw_to: str | None,
    zone: tzinfo,
    now: datetime,
    problems: dict[str, str],
) -> tuple[datetime, datetime]:
    since = _moment(raw_from, time.min, zone, "from", problems)
    until = _moment(raw_to, time.max, zone, "to", problems)
    try:
        if until is None:
            until = now if since is None else since + MAX_RANGE
        if since is None:
            since = until - MAX_RANGE
    except OverflowError:  # a week past the end of the calendar, or before its start
        problems.setdefault("from" if raw_from else "to", "is too near the calendar's end")
        return now, now
    if since > until:
        problems.setdefault("from", "must not be after `to`")
    elif until - since > MAX_RANGE:
        problems.setdefault("to", "must be at most 7 days after `from`")
    return since, until


def _moment(
    raw: str | None, day_time: time, zone: tzinfo, name: str, problems: dict[str, str]
) -> datetime | None:
    """An ISO 8601 date or datetime, in UTC; a bare date means its first (`from`) or last
    (`to`) moment in `zone`, so `to=2026-01-07` includes that whole day of the shop, and a
    time without an offset is `zone`'s."""
    if raw is None:
        return None
    try:
        moment = datetime.combine(date.fromisoformat(raw), day_time)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            problems[name] = "must be an ISO 8601 date or date and time"
            return None
    local = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    try:
        return local.astimezone(UTC)
    except OverflowError:  # in UTC it falls outside the calendar
        problems[name] = "is too near the calendar's end"
        return None


def encode_cursor(moment: datetime, row_id: int) -> str:
    raw = json.dumps([moment.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (time, id) position a cursor stands for; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = json.loads(raw)
        position = datetime.fromisoformat(moment)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a report cursor") from exc
    if position.tzinfo is None or type(row_id) is not int:
        raise ValueError("not a report cursor")
    return position, row_id


async def orders(db: Database, shop_id: int, filters: Filters) -> OrderReport:
    """The orders processed for verification, with totals over every page of the range."""
    conditions = [
        Order.shop_id == shop_id,
        Order.verification_status != "none",
        *_in_window(Order.placed_at, filters),
    ]
    if filters.customer:
        conditions.append(Order.phone == filters.customer)
    if filters.order:
        conditions.append(order_named(filters.order))
    if filters.status:
        conditions.append(Order.verification_status == filters.status)
    async with db.sessions() as session:
        rows = await session.scalars(
            _newest_first(select(Order).where(*conditions), Order.placed_at, Order.id, filters)
        )
        page = _page(rows.all(), filters.limit, lambda o: (o.placed_at, o.id))
        counts = dict(
            (
                await session.execute(
                    select(Order.verification_status, func.count())
                    .where(*conditions)
                    .group_by(Order.verification_status)
                )
            ).all()
        )
    totals = {"total": sum(counts.values())} | {status: counts.get(status, 0) for status in TOTALS}
    return OrderReport(page, totals)


async def order_card(db: Database, shop_id: int, name: str) -> OrderCard | None:
    """The shop's order named `name` ("#1001", "1001") with its timeline; None if none."""
    async with db.sessions() as session:
        order = await session.scalar(
            select(Order)
            .where(Order.shop_id == shop_id, order_named(name))
            .order_by(Order.placed_at.desc(), Order.id.desc())
            .limit(1)
        )
        if order is None:
            return None
        timeline = await session.scalars(
            select(Activity)
            .where(Activity.shop_id == shop_id, Activity.order_id == order.id)
            .order_by(Activity.created_at, Activity.id)
        )
        calls = await session.scalars(
            select(Call)
            .where(Call.shop_id == shop_id, Call.order_id == order.id)
            .order_by(Call.created_at, Call.id)
        )
        messages = await session.scalars(
            select(Message)
            .where(Message.shop_id == shop_id, Message.order_id == order.id)
            .order_by(Message.created_at, Message.id)
        )
        return OrderCard(order, list(timeline), list(calls), list(messages))


async def calls(
    db: Database, shop_id: int, filters: Filters
) -> Page[tuple[Call, OrderRef | None]]:
    conditions = [Call.shop_id == shop_id, *_in_window(Call.created_at, filters)]
    if filters.direction == "inbound":
        conditions.append(false())
    if filters.customer:
        conditions.append(Call.to_phone == filters.customer)
    if filters.agent:
        conditions.append(Call.from_phone == filters.agent)
    if filters.order:
        conditions.append(Call.order_id.in_(_order_ids(shop_id, filters.order)))
    if filters.input_digits:
        conditions.append(Call.input_digits == filters.input_digits)
    return await _with_order_refs(db, Call, conditions, filters)


async def messages(
    db: Database, shop_id: int, filters: Filters
) -> Page[tuple[Message, OrderRef | None]]:
    conditions = [Message.shop_id == shop_id, *_in_window(Message.created_at, filters)]
    if filters.customer:
        conditions.append(
            or_(
                and_(Message.direction == "out", Message.to_phone == filters.customer),
                and_(Message.direction == "in", Message.from_phone == filters.customer),
            )
        )
    if filters.order:
        conditions.append(Message.order_id.in_(_order_ids(shop_id, filters.order)))
    if filters.status:
        conditions.append(Message.status == filters.status)
    return await _with_order_refs(db, Message, conditions, filters)


async def missed_calls(
    db: Database, shop_id: int, filters: Filters
) -> Page[tuple[MissedCall, list[OrderRef]]]:
    """Missed calls, each with the orders it was matched to."""
    conditions = [MissedCall.shop_id == shop_id, *_in_window(MissedCall.received_at, filters)]
    if filters.customer:
        conditions.append(MissedCall.from_phone == filters.customer)
    async with db.sessions() as session:
        order_id: int | None = None
        if filters.order:
            order = await session.scalar(
                select(Order).where(Order.shop_id == shop_id, order_named(filters.order)).limit(1)
            )
            if order is None:
                return Page([], None)
            conditions.append(MissedCall.from_phone == order.phone)
            order_id = order.id
        stmt = _newest_first(
            select(MissedCall).where(*conditions), MissedCall.received_at, MissedCall.id, filters
        )
        if order_id is None:
            found = list(await session.scalars(stmt))
        else:
            # JSON containment is spelt differently on SQLite and PostgreSQL: the caller's
            # phone narrows the rows in SQL, the matched ids are checked here, so the page is
            # cut after the check.
            everything = await session.scalars(stmt.limit(None))
            found = [c for c in everything if order_id in c.matched_order_ids][: filters.limit + 1]
        page = _page(found, filters.limit, lambda call: (call.received_at, call.id))
        ids = {i for call in page.rows for i in call.matched_order_ids}
        refs = {
            ref_id: OrderRef(name, number)
            for ref_id, name, number in (
                await session.execute(
                    select(Order.id, Order.name, Order.number).where(
                        Order.shop_id == shop_id, Order.id.in_(ids)
                    )
                )
            ).all()
        }
    rows = [(call, [refs[i] for i in call.matched_order_ids if i in refs]) for call in page.rows]
    return Page(rows, page.next_cursor)


def order_named(text: str) -> ColumnElement[bool]:
    """An order by its name ("#1001", or a custom one) or by its number ("1001")."""
    number = _ORDER_NUMBER.fullmatch(text)
    if number is None:
        return Order.name == text
    return or_(Order.name == text, Order.number == int(number[1]))


def _order_ids(shop_id: int, name: str) -> Select[tuple[int]]:
    return select(Order.id).where(Order.shop_id == shop_id, order_named(name))


async def _with_order_refs(
    db: Database, model: type[RowT], conditions: list[ColumnElement[bool]], filters: Filters
) -> Page[tuple[RowT, OrderRef | None]]:
    """A page of calls or messages, each with the order it belongs to (if any)."""
    stmt = (
        select(model, Order.name, Order.number)
        .outerjoin(Order, and_(Order.id == model.order_id, Order.shop_id == model.shop_id))
        .where(*conditions)
    )
    async with db.sessions() as session:
        rows = await session.execute(_newest_first(stmt, model.created_at, model.id, filters))
        listed = [
            (row, None if name is None else OrderRef(name, number)) for row, name, number in rows
        ]
    return _page(listed, filters.limit, lambda row: (row[0].created_at, row[0].id))


def _in_window(column: Any, filters: Filters) -> list[ColumnElement[bool]]:
    return [column >= filters.since, column <= filters.until]


def _newest_first(stmt: Select[Any], moment: Any, row_id: Any, filters: Filters) -> Select[Any]:
    """One row more than a page, after the cursor's position, newest first (ties by id)."""
    if filters.after is not None:
        at, last_id = filters.after
        stmt = stmt.where(or_(moment < at, and_(moment == at, row_id < last_id)))
    return stmt.order_by(moment.desc(), row_id.desc()).limit(filters.limit + 1)


def _page(rows: Sequence[T], limit: int, position: Callable[[T], tuple[datetime, int]]) -> Page[T]:
    if len(rows) <= limit:
        return Page(list(rows), None)
    kept = list(rows[:limit])
    return Page(kept, encode_cursor(*position(kept[-1])))


@dataclass(frozen=True)
class DayCount:
    """One shop day's orders by how their verification ended."""

    day: date
    confirmed: int
    cancelled: int
    unverified: int


CHART_STATUSES = ("confirmed", "cancelled", "unverified")


async def daily_outcomes(db: Database, shop_id: int, zone: str, now: datetime) -> list[DayCount]:
    """The last 7 shop days up to today (oldest first): orders placed each day that were
    confirmed, cancelled or left unverified."""
    local_zone = ZoneInfo(zone)
    today = now.astimezone(local_zone).date()
    days = [today - timedelta(days=back) for back in range(6, -1, -1)]
    since = datetime.combine(days[0], time.min, local_zone).astimezone(UTC)
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(Order.placed_at, Order.verification_status).where(
                    Order.shop_id == shop_id,
                    Order.placed_at >= since,
                    Order.placed_at <= now,
                    Order.verification_status.in_(CHART_STATUSES),
                )
            )
        ).all()
    counts = {day: dict.fromkeys(CHART_STATUSES, 0) for day in days}
    for placed_at, status in rows:
        day = placed_at.astimezone(local_zone).date()
        if day in counts:
            counts[day][status] += 1
    return [DayCount(day, **counts[day]) for day in days]


async def every_row(
    query: Callable[[Database, int, Filters], Awaitable[Any]],
    db: Database,
    shop_id: int,
    filters: Filters,
) -> list[Any]:
    """Every row of a report's range and filters, newest first, from its first page on (an
    export: the range is at most seven days)."""
    found: list[Any] = []
    after = None
    while True:
        result = await query(db, shop_id, replace(filters, limit=MAX_LIMIT, after=after))
        page = result.page if isinstance(result, OrderReport) else result
        found += page.rows
        if page.next_cursor is None:
            return found
        after = decode_cursor(page.next_cursor)


class ReportDesk:
    """The reports of a shop for a caller that holds raw filters (the merchant bot): the
    shop's country and time zone and the clock's now read them, as the admin API does."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def filters(
        self,
        shop_id: int,
        params: Mapping[str, str],
        accepted: frozenset[str],
        statuses: Collection[str] | None = None,
    ) -> Filters:
        """`parse_filters` for the shop; FilterError as it raises it."""
        shop = await self._shop(shop_id)
        return parse_filters(
            params,
            accepted,
            country=shop.country,
            zone=shop_zone(shop),
            now=self.clock.now(),
            statuses=statuses,
        )

    async def daily(self, shop_id: int) -> tuple[str, list[DayCount]]:
        """The shop's time zone and its `daily_outcomes`."""
        zone = await self.zone(shop_id)
        return zone, await daily_outcomes(self.db, shop_id, zone, self.clock.now())

    async def zone(self, shop_id: int) -> str:
        """The shop's IANA time zone, the one its reports' days are in."""
        return shop_zone(await self._shop(shop_id))

    async def _shop(self, shop_id: int) -> Shop:
        async with self.db.sessions() as session:
            shop = await session.get(Shop, shop_id)
        if shop is None:
            raise LookupError(f"no shop {shop_id}")
        return shop


# Seed 003's names of an order's statuses, from Shopify's values as our orders keep them.
PAYMENT_STATUS_NAMES = {
    "paid": "Paid",
    "pending": "Unpaid",
    "authorized": "Unpaid (authorized)",
    "partially_paid": "Partially paid",
    "partially_refunded": "Partially refunded",
    "refunded": "Refunded",
    "voided": "Voided",
    "expired": "Expired",
}
FULFILLMENT_STATUS_NAMES = {
    "fulfilled": "Fulfilled",
    "partial": "Partially fulfilled",
    "restocked": "Restocked",
    "": "Unfulfilled",
}


def status_names(order: Order) -> dict[str, str]:
    """The order, payment and fulfilment status of `order` as seed 003 names them."""
    return {
        "order": "Cancelled" if order.cancelled_at is not None else "Open",
        "payment": PAYMENT_STATUS_NAMES.get(order.financial_status, order.financial_status)
        or "Unknown",
        "fulfillment": FULFILLMENT_STATUS_NAMES.get(
            order.fulfillment_status, order.fulfillment_status
        ),
    }
