"""The order card (`/order 1001`, or a tap on an order under a report) and the merchant's
actions on it: cancel (a reason from Shopify's, a summary, then confirm), refund (for a
delivered order: once the return arrived, or without a return) and partial refund (lines
picked with buttons and/or an amount typed, a summary, then confirm), with seed 003's rules.

The card is `flows.orders.reports.order_card`, the admin API's, with the statuses Shopify holds
now (`flows.orders.card`); the rules and the Shopify calls are `flows.orders.actions`, the admin
API's cancel and refund routes' too. A button carries the order's number (and a line's place
or a reason) only; a partial refund's choices wait in the chat's FSM data, forgotten once
confirmed. What a button does is checked again, on the chat's own shop, when pressed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, MaybeInaccessibleMessage, Message

from bot.filters import Linked
from bot.keyboards import OrderTap, rows_keyboard
from flows.orders import reports
from flows.orders.actions import (
    CANCEL_REASONS,
    ActionFailed,
    ActionRefused,
    Done,
    MerchantOrders,
    RefundLine,
    check_refundable,
    plan_cancel,
    plan_refund,
)
from flows.orders.card import CardLine, LiveStatus, live_status
from flows.orders.reports import OrderCard, ReportDesk
from flows.shops.bot_links import ChatLink
from providers.shopify.admin import OrderDetails
from storage.models import Order

ASK_NUMBER = "Which order? Send /order followed by its number, e.g. /order 1001."
NO_ORDER = "There is no order {name} in {shop}."
ASK_REASON = "Why is {name} cancelled? (Shopify's reasons)"
ASK_RETURN = (
    "{name} was delivered: it is refunded once the return arrived, or without a return "
    "if you decide so (a no-return policy)."
)
CONFIRM = "{summary}\nConfirm?"
REFUSED = "Not done: {rule}."
FAILED = "Not done: {error}"
KEPT = "Nothing was changed."
CANCELLED = "{name} is cancelled{refund} (Shopify: payment {payment})."
REFUNDED = "{amount} {currency} of {name} is refunded (Shopify: payment {payment})."

NO_SHOPIFY = "(Shopify did not answer: statuses as last recorded.)"
PICK = (
    "What of {name} is refunded? Each tap on a line adds one (up to what can still be "
    "refunded, then back to none). Or send an amount, e.g. 250.50, for the lines chosen "
    "or for none. /cancel stops.\nChosen: {chosen}"
)
NOTHING_CHOSEN = "nothing yet"
PARTIAL_REFUNDED = "{amount} {currency} of {name} is refunded{lines} (Shopify: payment {payment})."

NOT_OPEN = "That partial refund is not open (any more): tap Partial refund on the order's card."
NO_ANSWER = "Shopify did not answer; try again later."

# Button values of a delivered order's refund.
RETURNED, NO_RETURN = "returned", "no_return"


class PartialSteps(StatesGroup):
    amount = State()  # the picker is shown; an amount may be typed
    confirm = State()  # the summary is shown; Confirm refunds


def router() -> Router:
    router = Router(name="orders")
    linked = Linked()
    router.message.register(show_order, Command("order"), linked)
    router.callback_query.register(tap, OrderTap.filter(F.action == "show"), linked)
    router.callback_query.register(ask_reason, OrderTap.filter(F.action == "cancel"), linked)
    router.callback_query.register(confirm_cancel, OrderTap.filter(F.action == "reason"), linked)
    router.callback_query.register(ask_refund, OrderTap.filter(F.action == "refund"), linked)
    router.callback_query.register(
        confirm_refund, OrderTap.filter(F.action == "refund_how"), linked
    )
    router.callback_query.register(
        carry_out, OrderTap.filter(F.action.in_({"do_cancel", "do_refund"})), linked
    )
    router.callback_query.register(keep, OrderTap.filter(F.action == "keep"), linked)
    router.callback_query.register(ask_part, OrderTap.filter(F.action == "part"), linked)
    router.callback_query.register(part_how, OrderTap.filter(F.action == "part_how"), linked)
    router.callback_query.register(pick, OrderTap.filter(F.action == "pick"), linked)
    router.callback_query.register(confirm_part, OrderTap.filter(F.action == "part_lines"), linked)
    router.callback_query.register(carry_out_part, OrderTap.filter(F.action == "do_part"), linked)
    # A Telegram reply (to a customer's forwarded message) is an answer, not an amount.
    router.message.register(
        amount_typed,
        PartialSteps.amount,
        F.text,
        ~F.text.startswith("/"),
        ~F.reply_to_message,
        linked,
    )
    return router


async def show_order(
    message: Message,
    command: CommandObject,
    link: ChatLink,
    report_desk: ReportDesk,
    merchant_orders: MerchantOrders,
) -> None:
    name = (command.args or "").strip()
    if not name:
        await message.answer(ASK_NUMBER)
        return
    await _send_card(message, link, report_desk, merchant_orders, name)


async def tap(
    query: CallbackQuery,
    callback_data: OrderTap,
    link: ChatLink,
    report_desk: ReportDesk,
    merchant_orders: MerchantOrders,
) -> None:
    await query.answer()
    if query.message is not None:
        await _send_card(
            query.message, link, report_desk, merchant_orders, str(callback_data.number)
        )


async def ask_reason(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    try:
        plan_cancel(order, reason=CANCEL_REASONS[0])
    except ActionRefused as exc:
        await query.message.answer(REFUSED.format(rule=exc.message))
        return
    buttons = [
        (reason.capitalize(), OrderTap(number=order.number, action="reason", value=reason))
        for reason in CANCEL_REASONS
    ]
    await query.message.answer(
        ASK_REASON.format(name=order.name), reply_markup=rows_keyboard([buttons[:3], buttons[3:]])
    )


async def confirm_cancel(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    try:
        plan = plan_cancel(order, reason=callback_data.value)
    except ActionRefused as exc:
        await query.message.answer(REFUSED.format(rule=exc.message))
        return
    await _confirm(query.message, plan.summary(order.name), order.number, "do_cancel", plan.reason)


async def ask_refund(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    try:
        plan = plan_refund(order)
    except ActionRefused as exc:
        if exc.field != "returned":
            await query.message.answer(REFUSED.format(rule=exc.message))
            return
        await _ask_whether_returned(query.message, order, "refund_how")
        return
    await _confirm(query.message, plan.summary(order.name), order.number, "do_refund", "")


async def _ask_whether_returned(
    message: MaybeInaccessibleMessage, order: Order, action: str
) -> None:
    """Delivered: the merchant says whether the return arrived, or refunds without one;
    the answer comes back as `action`."""
    how = [
        ("Return arrived", OrderTap(number=order.number, action=action, value=RETURNED)),
        ("Refund without return", OrderTap(number=order.number, action=action, value=NO_RETURN)),
    ]
    await message.answer(ASK_RETURN.format(name=order.name), reply_markup=rows_keyboard([how]))


async def confirm_refund(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    await _plan_refund(query.message, order, callback_data.value)


async def carry_out(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    user = query.from_user
    by = f"{user.full_name} (telegram {user.id})"
    value = callback_data.value
    try:
        if callback_data.action == "do_cancel":
            done = await merchant_orders.cancel(link.shop_id, order.name, by=by, reason=value)
        else:
            done = await merchant_orders.refund(
                link.shop_id,
                order.name,
                by=by,
                returned=value == RETURNED,
                no_return=value == NO_RETURN,
            )
    except ActionRefused as exc:
        await query.message.answer(REFUSED.format(rule=exc.message))
        return
    except ActionFailed as exc:
        await query.message.answer(FAILED.format(error=exc))
        return
    await query.message.answer(_result(order.name, done))


async def keep(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer(KEPT)


async def ask_part(
    query: CallbackQuery,
    callback_data: OrderTap,
    state: FSMContext,
    link: ChatLink,
    merchant_orders: MerchantOrders,
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    try:
        check_refundable(order)
    except ActionRefused as exc:
        if exc.field != "returned":
            await query.message.answer(REFUSED.format(rule=exc.message))
            return
        await _ask_whether_returned(query.message, order, "part_how")
        return
    await _start_picker(query.message, state, order, merchant_orders, "")


async def part_how(
    query: CallbackQuery,
    callback_data: OrderTap,
    state: FSMContext,
    link: ChatLink,
    merchant_orders: MerchantOrders,
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    how = callback_data.value if callback_data.value in (RETURNED, NO_RETURN) else ""
    await _start_picker(query.message, state, order, merchant_orders, how)


async def pick(
    query: CallbackQuery,
    callback_data: OrderTap,
    state: FSMContext,
    link: ChatLink,
    merchant_orders: MerchantOrders,
) -> None:
    """One more of a line (its place on the order in the button), back to none past what is
    left of it."""
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    picking = await _picking(state, PartialSteps.amount, order.number)
    if picking is None or not callback_data.value.isdigit():
        await query.message.answer(NOT_OPEN)
        return
    details = await merchant_orders.details(order)
    if details is None:
        await query.message.answer(NO_ANSWER)
        return
    index = int(callback_data.value)
    if index < len(details.line_items):
        count = picking.chosen.get(index, 0) + 1
        picking.chosen[index] = count % (details.line_items[index].refundable + 1)
    await _show_picker(query.message, state, order, details, picking, edit=True)


async def confirm_part(
    query: CallbackQuery,
    callback_data: OrderTap,
    state: FSMContext,
    link: ChatLink,
    merchant_orders: MerchantOrders,
) -> None:
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    picking = await _picking(state, PartialSteps.amount, order.number)
    if picking is None:
        await query.message.answer(NOT_OPEN)
        return
    await _quote(query.message, state, order, merchant_orders, picking)


async def amount_typed(
    message: Message, state: FSMContext, link: ChatLink, merchant_orders: MerchantOrders
) -> None:
    data = await state.get_data()
    order = await merchant_orders.find(link.shop_id, str(data.get("number", "")))
    picking = None if order is None else await _picking(state, PartialSteps.amount, order.number)
    if order is None or picking is None:
        await state.clear()
        await message.answer(NOT_OPEN)
        return
    picking.amount = (message.text or "").strip()
    await _quote(message, state, order, merchant_orders, picking)


async def carry_out_part(
    query: CallbackQuery,
    callback_data: OrderTap,
    state: FSMContext,
    link: ChatLink,
    merchant_orders: MerchantOrders,
) -> None:
    """The summary's Confirm: once (the choices are forgotten as it starts)."""
    order = await _order(query, link, merchant_orders, callback_data.number)
    if order is None or query.message is None:
        return
    picking = await _picking(state, PartialSteps.confirm, order.number)
    if picking is None:
        await query.message.answer(NOT_OPEN)
        return
    await state.clear()
    user = query.from_user
    try:
        done = await merchant_orders.refund(
            link.shop_id,
            order.name,
            by=f"{user.full_name} (telegram {user.id})",
            line_items=await _lines(merchant_orders, order, picking.chosen),
            amount=picking.amount,
            returned=picking.how == RETURNED,
            no_return=picking.how == NO_RETURN,
            refunded_before=picking.refunded,
        )
    except ActionRefused as exc:
        await query.message.answer(REFUSED.format(rule=exc.message))
        return
    except ActionFailed as exc:
        await query.message.answer(FAILED.format(error=exc))
        return
    await query.message.answer(_result(order.name, done))


@dataclass
class Picking:
    """A partial refund being chosen, kept in the chat's FSM data: the order, how a delivered
    one is refunded, {line place: count}, the amount typed, and, once summed up, what Shopify
    had refunded then."""

    number: int
    how: str = ""
    chosen: dict[int, int] = field(default_factory=dict)
    amount: str | None = None
    refunded: str | None = None

    def data(self) -> dict[str, Any]:
        return asdict(self) | {"chosen": {str(i): n for i, n in self.chosen.items() if n}}


async def _picking(state: FSMContext, step: State, number: int) -> Picking | None:
    """The chat's partial refund of order `number` at `step`; None if it has none open."""
    if await state.get_state() != step.state:
        return None
    data = await state.get_data()
    if data.get("number") != number:
        return None
    chosen = data.get("chosen") or {}
    return Picking(
        number=number,
        how=str(data.get("how") or ""),
        chosen={int(i): int(n) for i, n in chosen.items()},
        amount=data.get("amount"),
        refunded=data.get("refunded"),
    )


async def _start_picker(
    message: MaybeInaccessibleMessage,
    state: FSMContext,
    order: Order,
    merchant_orders: MerchantOrders,
    how: str,
) -> None:
    details = await merchant_orders.details(order)
    if details is None:
        await message.answer(NO_ANSWER)
        return
    await _show_picker(message, state, order, details, Picking(order.number, how), edit=False)


async def _show_picker(
    message: MaybeInaccessibleMessage,
    state: FSMContext,
    order: Order,
    details: OrderDetails,
    picking: Picking,
    *,
    edit: bool,
) -> None:
    """The lines left to refund as buttons, each tap adding one; an amount may be typed."""
    items = details.line_items
    picking.chosen = {i: n for i, n in picking.chosen.items() if i < len(items) and n > 0}
    buttons = [
        [
            (
                f"{item.title}: {picking.chosen.get(index, 0)} of {item.refundable}",
                OrderTap(number=order.number, action="pick", value=str(index)),
            )
        ]
        for index, item in enumerate(items)
        if item.refundable > 0
    ]
    if picking.chosen:
        done = OrderTap(number=order.number, action="part_lines")
        buttons.append([("Refund the chosen lines", done)])
    named = [f"{n} × {items[i].title}" for i, n in sorted(picking.chosen.items())]
    text = PICK.format(name=order.name, chosen=", ".join(named) or NOTHING_CHOSEN)
    await state.set_state(PartialSteps.amount)
    await state.set_data(picking.data())
    keyboard = rows_keyboard(buttons) if buttons else None
    if edit and isinstance(message, Message):
        await message.edit_text(text, reply_markup=keyboard)
    else:
        await message.answer(text, reply_markup=keyboard)


async def _quote(
    message: MaybeInaccessibleMessage,
    state: FSMContext,
    order: Order,
    merchant_orders: MerchantOrders,
    picking: Picking,
) -> None:
    """The partial refund's summary and Confirm; a refusal keeps the picker's question open."""
    try:
        plan = await merchant_orders.quote_refund(
            order,
            line_items=await _lines(merchant_orders, order, picking.chosen),
            amount=picking.amount,
            returned=picking.how == RETURNED,
            no_return=picking.how == NO_RETURN,
        )
    except ActionRefused as exc:
        await message.answer(REFUSED.format(rule=exc.message))
        return
    except ActionFailed as exc:
        await message.answer(FAILED.format(error=exc))
        return
    picking.refunded = plan.refunded_before
    await state.set_state(PartialSteps.confirm)
    await state.set_data(picking.data())
    await _confirm(message, plan.summary(order.name), order.number, "do_part", "")


async def _lines(
    merchant_orders: MerchantOrders, order: Order, chosen: dict[int, int]
) -> list[RefundLine]:
    """The picked lines (by their place on the order) as Shopify's line items."""
    if not chosen:
        return []
    details = await merchant_orders.details(order)
    if details is None:
        raise ActionFailed(NO_ANSWER)
    items = details.line_items
    if any(index >= len(items) for index in chosen):
        raise ActionRefused("line_items", "the order's lines changed; open its card again")
    return [RefundLine(items[index].id, count) for index, count in sorted(chosen.items())]


async def _order(
    query: CallbackQuery, link: ChatLink, merchant_orders: MerchantOrders, number: int
) -> Order | None:
    """The chat's shop's order, the query answered; None (and said) if the shop has none."""
    await query.answer()
    order = await merchant_orders.find(link.shop_id, str(number))
    if order is None and query.message is not None:
        await query.message.answer(NO_ORDER.format(name=number, shop=link.shop_name))
    return order


async def _plan_refund(message: MaybeInaccessibleMessage, order: Order, how: str) -> None:
    try:
        plan = plan_refund(order, returned=how == RETURNED, no_return=how == NO_RETURN)
    except ActionRefused as exc:
        await message.answer(REFUSED.format(rule=exc.message))
        return
    await _confirm(message, plan.summary(order.name), order.number, "do_refund", how)


async def _confirm(
    message: MaybeInaccessibleMessage, summary: str, number: int, action: str, value: str
) -> None:
    buttons = [
        ("Confirm", OrderTap(number=number, action=action, value=value)),
        ("Keep the order as it is", OrderTap(number=number, action="keep")),
    ]
    await message.answer(CONFIRM.format(summary=summary), reply_markup=rows_keyboard([buttons]))


def _result(name: str, done: Done) -> str:
    plan = done.plan
    if plan.partial:
        lines = ", ".join(f"{line.quantity} × {line.title}" for line in plan.lines)
        return PARTIAL_REFUNDED.format(
            amount=plan.amount,
            currency=plan.currency,
            name=name,
            lines=f" for {lines}" if lines else "",
            payment=done.financial_status,
        )
    if plan.cancel:
        refund = f" and {plan.amount} {plan.currency} refunded" if plan.refund else ""
        return CANCELLED.format(name=name, refund=refund, payment=done.financial_status)
    return REFUNDED.format(
        amount=plan.amount, currency=plan.currency, name=name, payment=done.financial_status
    )


async def _send_card(
    message: Message | MaybeInaccessibleMessage,
    link: ChatLink,
    report_desk: ReportDesk,
    merchant_orders: MerchantOrders,
    name: str,
) -> None:
    card = await reports.order_card(report_desk.db, link.shop_id, name)
    if card is None:
        await message.answer(NO_ORDER.format(name=name, shop=link.shop_name))
        return
    details = await merchant_orders.details(card.order)
    live = None if details is None else live_status(details, await report_desk.zone(link.shop_id))
    await message.answer(card_text(card, live), reply_markup=_actions(card))


def card_text(card: OrderCard, live: LiveStatus | None = None) -> str:
    """The card: statuses as Shopify holds them now (`live`), else as last recorded."""
    order = card.order
    names = reports.status_names(order)
    if live is not None:
        names = {"order": live.order, "payment": live.payment, "fulfillment": live.fulfillment}
    lines = [
        f"Order {order.name} · {order.total_amount} {order.currency} · "
        f"{order.payment_method.upper()} · placed {order.placed_at:%Y-%m-%d %H:%M} UTC",
        f"Customer: {order.phone or '-'}",
        f"Order status: {names['order']}",
        f"Payment status: {names['payment']}",
        f"Fulfilment status: {names['fulfillment']}",
        f"Verification: {order.verification_status.replace('_', ' ')}",
    ]
    if live is None:
        lines.append(NO_SHOPIFY)
    elif Decimal(live.refunded or "0") > 0:
        lines.append(f"Refunded: {live.refunded} {live.currency}")
    if live is not None and live.lines:
        lines.append("Items:")
        lines += [_line_text(line) for line in live.lines]
    elif order.items:
        lines.append("Items:")
        lines += [
            f"- {item.get('title', '')} × {item.get('quantity', 1)} ({item.get('price', '')})"
            for item in order.items
        ]
    events = [
        (a.created_at, f"{a.kind.replace('_', ' ')} ({a.mode}){_by(a.detail)}")
        for a in card.timeline
    ]
    events += [
        (
            call.created_at,
            f"call {call.attempt} to {call.to_phone}: {call.status}"
            + (f", pressed {call.input_digits}" if call.input_digits else ""),
        )
        for call in card.calls
    ]
    events += [
        (
            m.created_at,
            f"{m.channel} {'to' if m.direction == 'out' else 'from'} "
            f"{m.to_phone if m.direction == 'out' else m.from_phone}: {m.status}",
        )
        for m in card.messages
    ]
    lines.append("Timeline:")
    lines += [f"{at:%m-%d %H:%M} {text}" for at, text in sorted(events)] or ["- nothing yet"]
    return "\n".join(lines)


def _line_text(line: CardLine) -> str:
    """A line with its shipments and tracking URLs, and how much of it was refunded."""
    parts = [f"- {line.title} × {line.quantity} ({line.unit_price})"]
    if line.refundable < line.quantity:
        parts.append(f"{line.quantity - line.refundable} refunded")
    parts += line.shipments
    parts += [f"track: {url}" for url in line.tracking_urls]
    return " · ".join(parts)


def _by(detail: dict[str, object]) -> str:
    return f" by {detail['by']}" if detail.get("by") else ""


def _actions(card: OrderCard) -> InlineKeyboardMarkup:
    number = card.order.number
    return rows_keyboard(
        [
            [
                ("Cancel order", OrderTap(number=number, action="cancel")),
                ("Refund", OrderTap(number=number, action="refund")),
            ],
            [("Partial refund", OrderTap(number=number, action="part"))],
        ]
    )
