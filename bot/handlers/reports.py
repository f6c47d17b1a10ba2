"""The merchant's reports in the chat: `/orders` (with its totals card), `/calls`,
`/messages` and `/missedcalls`, a page at a time, filtered from the buttons under the report or
by a typed customer phone, order number or date range; the report as CSV, and the chart of the
last seven days' orders.

The filters, their rules (the 7-day range among them) and the queries are the admin API's, from
`flows.orders.reports`; this module only renders them. The report a chat looks at (its kind,
filters and the cursors of the pages it went through) is in the chat's FSM data.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    MaybeInaccessibleMessage,
    Message,
)

from bot.filters import Linked
from bot.keyboards import OrderTap, ReportAction, rows_keyboard
from flows.orders import export, reports
from flows.orders.chart import daily_chart
from flows.orders.reports import FilterError, Filters, OrderRef, ReportDesk
from flows.shops.bot_links import ChatLink
from storage.models import Call, MissedCall, Order
from storage.models import Message as MessageRow

PAGE_SIZE = 10

NOTHING = "Nothing in this range with these filters."
ASK_SEARCH = (
    "Type the customer's phone number (e.g. +919876543210) or an order number (e.g. 1001)."
)
ASK_DATES = (
    "Type the first and the last day, e.g. 2026-01-01 2026-01-07 (at most 7 days; "
    "one day alone starts a 7-day range)."
)
REFUSED = "I cannot show that:\n{problems}"
TRY_AGAIN = "Please try again, or /cancel."
STALE = "This report is no longer open: send the command again."
NO_ROWS = "There is nothing to export in this range."
CHART_CAPTION = "Orders of {shop}, last 7 days ({zone})"
TOTALS = (
    "Total {total} · confirmed {confirmed} · cancelled {cancelled} · "
    "callback requested {callback_requested} · pending {pending}"
)

# The buttons of each filter, per report, and the values they offer.
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "orders": {
        "status": ("confirmed", "cancelled", "callback_requested", "pending", "unverified")
    },
    "calls": {"direction": reports.CALL_DIRECTIONS, "input": ("1", "2", "3")},
    "messages": {"status": ("queued", "sent", "delivered", "read", "undelivered", "failed")},
    "missedcalls": {},
}
# A typed search is a phone when it has this many digits or starts with "+".
_PHONE_DIGITS = 10
_DATES = re.compile(r"\s*(?:\.\.|–|—|\bto\b|\s)\s*")


@dataclass(frozen=True)
class Report:
    title: str
    accepted: frozenset[str]
    statuses: Collection[str] | None
    query: Callable[..., Awaitable[Any]]
    line: Callable[[Any], str]
    refs: Callable[[Any], list[OrderRef]]
    csv: Callable[[Iterable[Any]], bytes]


class ReportStates(StatesGroup):
    search = State()
    dates = State()


def _order_line(order: Order) -> str:
    return (
        f"{order.name} · {order.placed_at:%m-%d %H:%M} · {order.phone or '-'} · "
        f"{order.total_amount} {order.currency} · {order.verification_status}"
    )


def _call_line(row: tuple[Call, OrderRef | None]) -> str:
    call, ref = row
    digits = f" · pressed {call.input_digits}" if call.input_digits else ""
    return (
        f"{call.created_at:%m-%d %H:%M} · {call.to_phone} · {call.status}{digits}"
        f" · {ref.name if ref else '-'}"
    )


def _message_line(row: tuple[MessageRow, OrderRef | None]) -> str:
    message, ref = row
    arrow = "→" if message.direction == "out" else "←"
    phone = message.to_phone if message.direction == "out" else message.from_phone
    body = message.body if len(message.body) <= 40 else message.body[:39] + "…"
    return (
        f"{message.created_at:%m-%d %H:%M} {arrow} {phone} · {message.channel} · "
        f"{message.status} · {ref.name if ref else '-'} · {body}"
    )


def _missed_line(row: tuple[MissedCall, list[OrderRef]]) -> str:
    call, refs = row
    names = " ".join(ref.name for ref in refs) or "-"
    return f"{call.received_at:%m-%d %H:%M} · {call.from_phone} · {names}"


def _one_ref(row: tuple[Any, OrderRef | None]) -> list[OrderRef]:
    return [] if row[1] is None else [row[1]]


REPORTS = {
    "orders": Report(
        "Orders",
        reports.ORDER_FILTERS,
        reports.VERIFICATION_STATUSES,
        reports.orders,
        _order_line,
        lambda order: [OrderRef(order.name, order.number)],
        export.orders_csv,
    ),
    "calls": Report(
        "Calls", reports.CALL_FILTERS, None, reports.calls, _call_line, _one_ref, export.calls_csv
    ),
    "messages": Report(
        "Messages",
        reports.MESSAGE_FILTERS,
        None,
        reports.messages,
        _message_line,
        _one_ref,
        export.messages_csv,
    ),
    "missedcalls": Report(
        "Missed calls",
        reports.MISSED_CALL_FILTERS,
        None,
        reports.missed_calls,
        _missed_line,
        lambda row: row[1],
        export.missed_calls_csv,
    ),
}


def router() -> Router:
    router = Router(name="reports")
    linked = Linked()
    router.message.register(open_report, Command(*REPORTS), linked)
    router.callback_query.register(act, ReportAction.filter(), linked)
    typing = ~F.text.startswith("/")
    router.message.register(typed_search, StateFilter(ReportStates.search), F.text, typing, linked)
    router.message.register(typed_dates, StateFilter(ReportStates.dates), F.text, typing, linked)
    return router


async def open_report(
    message: Message,
    state: FSMContext,
    raw_state: str | None,
    link: ChatLink,
    report_desk: ReportDesk,
) -> None:
    kind = (message.text or "").split()[0].lstrip("/").split("@")[0].lower()
    if raw_state is not None:  # a question left open; without one nothing is written
        await state.set_state(None)
    await _show(message, state, link, report_desk, {"kind": kind, "params": {}, "cursors": [""]})


async def act(
    query: CallbackQuery,
    callback_data: ReportAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    report_desk: ReportDesk,
) -> None:
    current = (await state.get_data()).get("report")
    if current is None or query.message is None:
        await query.answer(STALE, show_alert=True)
        return
    action, params = callback_data.action, dict(current["params"])
    if action in ("csv", "chart"):
        await query.answer()
        send = _send_csv if action == "csv" else _send_chart
        await send(query.message, link, report_desk, current)
        return
    if action in ("search", "dates"):
        await state.set_state(ReportStates.search if action == "search" else ReportStates.dates)
        await query.answer()
        await query.message.answer(ASK_SEARCH if action == "search" else ASK_DATES)
        return
    cursors = current["cursors"]
    if action == "next" and current.get("next"):
        cursors = [*cursors, current["next"]]
    elif action == "prev":
        cursors = cursors[:-1] or [""]
    else:
        cursors = [""]
        if action == "set":
            if params.get(callback_data.name) == callback_data.value:
                params.pop(callback_data.name)
            else:
                params[callback_data.name] = callback_data.value
        elif action == "week":
            params.pop("from", None)
            params.pop("to", None)
        elif action == "clear":
            params = {}
    await query.answer()
    new = {"kind": current["kind"], "params": params, "cursors": cursors}
    try:
        text, markup = await _render(link, report_desk, new)
    except FilterError as exc:
        await query.message.answer(_refused(exc))
        return
    await state.update_data(report=new)
    try:
        await bot.edit_message_text(
            text, chat_id=link.chat_id, message_id=query.message.message_id, reply_markup=markup
        )
    except TelegramBadRequest as exc:
        # A button that changes nothing (the range it picks is the one shown) is no error.
        if "not modified" not in exc.message:
            raise


async def typed_search(
    message: Message, state: FSMContext, link: ChatLink, report_desk: ReportDesk
) -> None:
    text = (message.text or "").strip()
    digits = re.sub(r"\D", "", text)
    name = "customer" if text.startswith("+") or len(digits) >= _PHONE_DIGITS else "order"
    await _typed(message, state, link, report_desk, {name: text}, ("customer", "order"))


async def typed_dates(
    message: Message, state: FSMContext, link: ChatLink, report_desk: ReportDesk
) -> None:
    days = [part for part in _DATES.split((message.text or "").strip()) if part]
    if not 1 <= len(days) <= 2:
        await message.answer(f"{ASK_DATES}\n{TRY_AGAIN}")
        return
    given = dict(zip(("from", "to"), days, strict=False))
    await _typed(message, state, link, report_desk, given, ("from", "to"))


async def _typed(
    message: Message,
    state: FSMContext,
    link: ChatLink,
    report_desk: ReportDesk,
    given: dict[str, str],
    replaces: tuple[str, ...],
) -> None:
    current = (await state.get_data()).get("report")
    if current is None:
        await state.set_state(None)
        await message.answer(STALE)
        return
    params = {k: v for k, v in current["params"].items() if k not in replaces} | given
    new = {"kind": current["kind"], "params": params, "cursors": [""]}
    try:
        await _show(message, state, link, report_desk, new)
    except FilterError as exc:
        await message.answer(f"{_refused(exc)}\n{TRY_AGAIN}")
        return
    await state.set_state(None)


async def _show(
    message: Message,
    state: FSMContext,
    link: ChatLink,
    report_desk: ReportDesk,
    current: dict[str, Any],
) -> None:
    """Send the report as a new message; FilterError (nothing sent) if its filters are
    refused."""
    text, markup = await _render(link, report_desk, current)
    await state.update_data(report=current)
    await message.answer(text, reply_markup=markup)


async def _filters(
    link: ChatLink, report_desk: ReportDesk, current: dict[str, Any], **paging: str
) -> Filters:
    report = REPORTS[current["kind"]]
    return await report_desk.filters(
        link.shop_id, current["params"] | paging, report.accepted, report.statuses
    )


async def _render(
    link: ChatLink, report_desk: ReportDesk, current: dict[str, Any]
) -> tuple[str, InlineKeyboardMarkup]:
    """The report's page as text and buttons; the next page's cursor goes into `current`
    (a cursor can be longer than a button's data may be)."""
    kind = current["kind"]
    report = REPORTS[kind]
    paging = {"limit": str(PAGE_SIZE)}
    if current["cursors"][-1]:
        paging["cursor"] = current["cursors"][-1]
    filters = await _filters(link, report_desk, current, **paging)
    result = await report.query(report_desk.db, link.shop_id, filters)
    page = result.page if isinstance(result, reports.OrderReport) else result
    zone = ZoneInfo(filters.zone)
    since, until = filters.since.astimezone(zone), filters.until.astimezone(zone)
    period = f"{since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} ({zone.key})"
    lines = [f"{report.title} of {link.shop_name}, {period}"]
    if current["params"]:
        lines.append("Filters: " + ", ".join(f"{k} {v}" for k, v in current["params"].items()))
    if isinstance(result, reports.OrderReport):
        lines.append(TOTALS.format(**result.totals))
    lines.append("")
    lines += [report.line(row) for row in page.rows] or [NOTHING]
    if len(current["cursors"]) > 1 or page.next_cursor:
        lines.append(f"Page {len(current['cursors'])}")
    current["next"] = page.next_cursor
    return "\n".join(lines), _keyboard(kind, current, page)


def _keyboard(kind: str, current: dict[str, Any], page: reports.Page[Any]) -> InlineKeyboardMarkup:
    params = current["params"]
    rows: list[list[tuple[str, Any]]] = []
    refs = {ref.number: ref for row in page.rows for ref in REPORTS[kind].refs(row)}
    buttons = [(ref.name, OrderTap(number=number)) for number, ref in refs.items()]
    rows += [buttons[start : start + 5] for start in range(0, len(buttons), 5)]
    for name, values in CHOICES[kind].items():
        rows.append(
            [
                (
                    ("✓ " if params.get(name) == value else "") + value.replace("_", " "),
                    ReportAction(action="set", name=name, value=value),
                )
                for value in values
            ]
        )
    rows.append(
        [
            ("Last 7 days", ReportAction(action="week")),
            ("Dates…", ReportAction(action="dates")),
            ("Customer or order…", ReportAction(action="search")),
            ("Clear", ReportAction(action="clear")),
        ]
    )
    paging = []
    if len(current["cursors"]) > 1:
        paging.append(("‹ Prev", ReportAction(action="prev")))
    if page.next_cursor:
        paging.append(("Next ›", ReportAction(action="next")))
    exports = [("CSV", ReportAction(action="csv"))]
    if kind == "orders":
        exports.append(("Chart", ReportAction(action="chart")))
    rows += [paging, exports]
    return rows_keyboard([row for row in rows if row])


async def _send_csv(
    message: MaybeInaccessibleMessage,
    link: ChatLink,
    report_desk: ReportDesk,
    current: dict[str, Any],
) -> None:
    report = REPORTS[current["kind"]]
    filters = await _filters(link, report_desk, current)
    rows = await reports.every_row(report.query, report_desk.db, link.shop_id, filters)
    if not rows:
        await message.answer(NO_ROWS)
        return
    name = f"{current['kind']}-{filters.since:%Y%m%d}-{filters.until:%Y%m%d}.csv"
    await message.answer_document(
        BufferedInputFile(report.csv(rows), filename=name),
        caption=f"{report.title} of {link.shop_name}: {len(rows)} rows",
    )


async def _send_chart(
    message: MaybeInaccessibleMessage,
    link: ChatLink,
    report_desk: ReportDesk,
    current: dict[str, Any],
) -> None:
    zone, days = await report_desk.daily(link.shop_id)
    title = CHART_CAPTION.format(shop=link.shop_name, zone=zone)
    png = await asyncio.to_thread(daily_chart, days, title)
    await message.answer_photo(BufferedInputFile(png, filename="orders-7-days.png"), caption=title)


def _refused(exc: FilterError) -> str:
    return REFUSED.format(
        problems="\n".join(f"- {name}: {message}" for name, message in exc.problems.items())
    )
