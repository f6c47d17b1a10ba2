"""The order card (`/order 1001`, or a tap on an order under a report) and the merchant's
actions on it: cancel (a reason from Shopify's, a summary, then confirm) and refund (for a
delivered order: once the return arrived, or without a return), with seed 003's rules.

The card is `flows.orders.reports.order_card`, the admin API's; the rules and the Shopify calls
are `flows.orders.actions`, the admin API's cancel and refund routes' too. A button carries the
order's number only: what it does is checked again, on the chat's own shop, when pressed.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
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
    plan_cancel,
    plan_refund,
)
from flows.orders.reports import OrderCard, ReportDesk
from flows.shops.bot_links import ChatLink
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

# Button values of a delivered order's refund.
RETURNED, NO_RETURN = "returned", "no_return"


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
    return router


async def show_order(
    message: Message, command: CommandObject, link: ChatLink, report_desk: ReportDesk
) -> None:
    name = (command.args or "").strip()
    if not name:
        await message.answer(ASK_NUMBER)
        return
    await _send_card(message, link, report_desk, name)


async def tap(
    query: CallbackQuery, callback_data: OrderTap, link: ChatLink, report_desk: ReportDesk
) -> None:
    await query.answer()
    if query.message is not None:
        await _send_card(query.message, link, report_desk, str(callback_data.number))


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
        # Delivered: the merchant says whether the return arrived, or refunds without one.
        how = [
            ("Return arrived", OrderTap(number=order.number, action="refund_how", value=RETURNED)),
            (
                "Refund without return",
                OrderTap(number=order.number, action="refund_how", value=NO_RETURN),
            ),
        ]
        await query.message.answer(
            ASK_RETURN.format(name=order.name), reply_markup=rows_keyboard([how])
        )
        return
    await _confirm(query.message, plan.summary(order.name), order.number, "do_refund", "")


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


async def keep(query: CallbackQuery) -> None:
    await query.answer(KEPT)


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
    name: str,
) -> None:
    card = await reports.order_card(report_desk.db, link.shop_id, name)
    if card is None:
        await message.answer(NO_ORDER.format(name=name, shop=link.shop_name))
        return
    await message.answer(card_text(card), reply_markup=_actions(card))


def card_text(card: OrderCard) -> str:
    order = card.order
    names = reports.status_names(order)
    lines = [
        f"Order {order.name} · {order.total_amount} {order.currency} · "
        f"{order.payment_method.upper()} · placed {order.placed_at:%Y-%m-%d %H:%M} UTC",
        f"Customer: {order.phone or '-'}",
        f"Order status: {names['order']}",
        f"Payment status: {names['payment']}",
        f"Fulfilment status: {names['fulfillment']}",
        f"Verification: {order.verification_status.replace('_', ' ')}",
    ]
    if order.items:
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


def _by(detail: dict[str, object]) -> str:
    return f" by {detail['by']}" if detail.get("by") else ""


def _actions(card: OrderCard) -> InlineKeyboardMarkup:
    number = card.order.number
    return rows_keyboard(
        [
            [
                ("Cancel order", OrderTap(number=number, action="cancel")),
                ("Refund", OrderTap(number=number, action="refund")),
            ]
        ]
    )
