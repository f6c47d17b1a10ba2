"""A chat's alerts: `/alerts` (on, off, or what they are), and the click-to-call button of a
callback request, which asks the agent's own phone once (kept with the chat's link; `/myphone`
changes it) and then has the shop's voice provider ring it and the customer."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.alerts import CallCustomer
from bot.filters import Linked
from flows.alerts.desk import AlertDesk, Asked, CallAsked
from flows.shops.bot_links import ChatLink


class CallSteps(StatesGroup):
    phone = State()


ALERTS_ON = (
    "Alerts are on in this chat: callbacks requested, customers' messages, work that failed "
    "for good, refused credentials, new orders and the daily summary (as the shop's settings "
    "say). /alerts off stops them here."
)
ALERTS_OFF = "Alerts are off in this chat. /alerts on starts them again."
ALERTS_USAGE = "Send /alerts on or /alerts off."
ASK_PHONE = (
    "Which phone should I ring first? Send your number (with its country code, e.g. "
    "+919812345678); I ring it, then connect you to {customer}. /cancel stops."
)
BAD_PHONE = "That is not a phone number I can call. Send it again with its country code."
RINGING = "Calling you on {agent}: answer, and {customer} is dialled."
CALL_GONE = "That callback request is not one of your shop's (any more)."
PHONE_IS = "I ring you on {phone} for click-to-call. /myphone <number> changes it."
NO_PHONE_YET = "No phone yet: /myphone <number> sets the one I ring for click-to-call."
PHONE_SET = "From now on I ring you on {phone}."


def router() -> Router:
    router = Router(name="alerts")
    linked = Linked()
    router.message.register(alerts, Command("alerts"), linked)
    router.message.register(my_phone, Command("myphone"), linked)
    router.callback_query.register(call_pressed, CallCustomer.filter(), linked)
    router.message.register(phone_sent, CallSteps.phone, F.text, ~F.text.startswith("/"), linked)
    return router


async def alerts(
    message: Message, command: CommandObject, link: ChatLink, alert_desk: AlertDesk
) -> None:
    wanted = (command.args or "").strip().lower()
    if wanted in ("on", "off"):
        await alert_desk.set_alerts(link, wanted == "on")
    elif wanted:
        await message.answer(ALERTS_USAGE)
        return
    await message.answer(ALERTS_ON if await alert_desk.alerts_on(link) else ALERTS_OFF)


async def my_phone(
    message: Message, command: CommandObject, link: ChatLink, alert_desk: AlertDesk
) -> None:
    if command.args:
        phone = await alert_desk.set_phone(link, command.args)
        await message.answer(BAD_PHONE if phone is None else PHONE_SET.format(phone=phone))
        return
    current = await alert_desk.phone(link)
    await message.answer(PHONE_IS.format(phone=current) if current else NO_PHONE_YET)


async def call_pressed(
    query: CallbackQuery,
    callback_data: CallCustomer,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    alert_desk: AlertDesk,
) -> None:
    asked = await alert_desk.call(link, callback_data.activity_id)
    if asked.outcome is CallAsked.GONE:
        await query.answer(CALL_GONE, show_alert=True)
        return
    await query.answer()
    if asked.outcome is CallAsked.NO_PHONE:
        await state.set_state(CallSteps.phone)
        await state.update_data(activity_id=callback_data.activity_id)
        await bot.send_message(link.chat_id, ASK_PHONE.format(customer=asked.customer))
        return
    await bot.send_message(link.chat_id, _ringing(asked))


async def phone_sent(
    message: Message, state: FSMContext, link: ChatLink, alert_desk: AlertDesk
) -> None:
    assert message.text is not None  # the filter
    if await alert_desk.set_phone(link, message.text) is None:
        await message.answer(BAD_PHONE)
        return
    activity_id = (await state.get_data()).get("activity_id")
    await state.clear()
    asked = await alert_desk.call(link, int(activity_id or 0))
    await message.answer(CALL_GONE if asked.outcome is CallAsked.GONE else _ringing(asked))


def _ringing(asked: Asked) -> str:
    return RINGING.format(agent=asked.agent, customer=asked.customer)
