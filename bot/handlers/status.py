"""`/status`: the shop's install status, the account carrying each channel, what is still
missing and what keeps notifications from reaching customers, from the same setup list as
`GET /api/v1/shop/setup`; the owner also gets what to paste where in each provider's console
and in the carrier's (those URLs carry the shop's callback tokens)."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.filters import Linked
from flows.channels.account_desk import AccountDesk
from flows.shops.bot_links import ChatLink

STATUS_NAMES = {
    "installed": "Installed",
    "partially_installed": "Partially installed",
    "uninstalled": "Uninstalled",
}
NOTHING_MISSING = "Nothing is missing: the shop verifies orders."
MISSING = "Missing before it is installed:"
WARNINGS = "Notification SMS will not reach customers until you set:"
PASTE = "What to paste where:"
PASTE_IS_THE_OWNERS = "The owner's /status also shows what to paste in the providers' consoles."


def router() -> Router:
    router = Router(name="status")
    router.message.register(show_status, Command("status"), Linked())
    return router


async def show_status(message: Message, link: ChatLink, accounts: AccountDesk) -> None:
    setup = await accounts.setup(link.shop_id)
    await message.answer(status_text(link, setup))


def status_text(link: ChatLink, setup: dict[str, Any]) -> str:
    lines = [f"{link.shop_name}: {STATUS_NAMES.get(setup['status'], setup['status'])}", ""]
    for channel, chosen in setup["channels"].items():
        carrier = f"{chosen['owner']} {chosen['provider']} account" if chosen else "no account"
        lines.append(f"{channel}: {carrier}")
    lines.append("")
    if setup["missing"]:
        lines.append(MISSING)
        lines += [f"- {problem['message']} ({problem['field']})" for problem in setup["missing"]]
    else:
        lines.append(NOTHING_MISSING)
    if setup["warnings"]:
        lines += ["", WARNINGS]
        lines += [f"- {problem['message']} ({problem['field']})" for problem in setup["warnings"]]
    pastes = [item for account in setup["accounts"] for item in account["paste"]]
    pastes += setup["paste"]
    if pastes and link.sees_callback_urls:
        lines += ["", PASTE]
        lines += [f"- {item['where']}:\n  {item['value']}" for item in pastes]
    elif pastes:
        lines += ["", PASTE_IS_THE_OWNERS]
    return "\n".join(lines)
