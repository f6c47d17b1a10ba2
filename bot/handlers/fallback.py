"""What is left: `/help`, and the answer to anything no topic took. A chat no shop has
linked learns how to link it, and nothing else."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.filters import Linked, Unlinked
from flows.shops.bot_links import ChatLink

NOT_LINKED = (
    "This chat is not linked to a shop. Send /start followed by your shop's link code "
    "(or an invitation code from the shop's owner)."
)
HELP = "This chat acts for {shop} as {role}. What you can do here:\n{commands}"
UNKNOWN = "I did not understand that. /help lists what you can do here."
STALE_BUTTON = "This button is no longer in use."

COMMANDS = {
    "help": "what you can do here",
    "status": "the shop's install status and what is missing",
    "settings": "the shop's settings and provider accounts, page by page (owner)",
    "invite": "a one-time code that links an agent's chat (owner)",
    "agents": "the shop's agents, and removing them (owner)",
    "orders": "orders with their totals, filters, CSV and the 7-day chart",
    "calls": "verification calls",
    "messages": "SMS and WhatsApp messages",
    "missedcalls": "missed calls and their orders",
    "order": "an order's card (/order 1001): statuses, timeline, cancel and refund",
    "alerts": "this chat's alerts on or off (/alerts on, /alerts off)",
    "myphone": "your phone, the one click-to-call rings before the customer (/myphone +91...)",
    "cancel": "stop what you are doing",
}


def router() -> Router:
    router = Router(name="fallback")
    router.message.register(not_linked, Unlinked())
    router.callback_query.register(not_linked_button, Unlinked())
    router.message.register(show_help, Command("help"), Linked())
    router.message.register(unknown, Linked())
    router.callback_query.register(stale_button, Linked())
    return router


async def not_linked(message: Message) -> None:
    await message.answer(NOT_LINKED)


async def not_linked_button(query: CallbackQuery) -> None:
    await query.answer(NOT_LINKED, show_alert=True)


async def show_help(message: Message, link: ChatLink) -> None:
    commands = "\n".join(
        f"/{name}: {text}"
        for name, text in COMMANDS.items()
        if link.manages_agents or "(owner)" not in text
    )
    await message.answer(HELP.format(shop=link.shop_name, role=link.role, commands=commands))


async def unknown(message: Message) -> None:
    await message.answer(UNKNOWN)


async def stale_button(query: CallbackQuery) -> None:
    await query.answer(STALE_BUTTON)
