"""The `/settings` Channels page's buttons: which connected account carries each channel (the
same use case as `PUT /api/v1/shop/channels`), and removing an account (as `DELETE
/api/v1/shop/accounts/{id}`) once the owner confirmed, told first what it leaves each channel
it carries."""

from __future__ import annotations

from typing import Any

from aiogram import Bot, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery

from bot.handlers.settings import GONE, SettingsSteps, page_buttons, show_page
from bot.keyboards import (
    CARRY,
    REMOVE_ACCOUNT,
    REMOVE_CONFIRMED,
    SHOW,
    SettingsAction,
    settings_buttons_keyboard,
)
from bot.settings_pages import CHANNEL_NAMES, PAGES, account_name, removal_consequences
from flows.channels.account_desk import AccountDesk
from flows.channels.accounts import AccountError
from flows.shops.bot_links import ChatLink

CARRIED = "{channel} is now carried by the {account}."
NOT_CHANGED = "Not changed:\n{problems}"
REMOVE_WHAT = "Remove the {account}? {consequences}"
REMOVED = "Removed the {account}. {consequences}"
YES_REMOVE = "Yes, remove it"
KEEP = "Keep it"


def router() -> Router:
    return page_buttons(
        "settings_channels",
        {CARRY: carry, REMOVE_ACCOUNT: ask_removal, REMOVE_CONFIRMED: remove},
    )


async def carry(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
) -> None:
    await query.answer()
    listing = await accounts.listing(link.shop_id)
    channels = list(listing["channels"])
    account = _account(listing, callback_data.option)
    if account is None or not 0 <= callback_data.item < len(channels):
        await bot.send_message(link.chat_id, GONE)
    else:
        channel = channels[callback_data.item]
        try:
            await accounts.choose(link.shop_id, {channel: account["id"]})
        except AccountError as exc:
            listed = "\n".join(f"- {p.field}: {p.message}" for p in exc.problems)
            await bot.send_message(link.chat_id, NOT_CHANGED.format(problems=listed))
        else:
            text = CARRIED.format(channel=CHANNEL_NAMES[channel], account=account_name(account))
            await bot.send_message(link.chat_id, text)
    await _back(bot, link, state, accounts, callback_data.page)


async def ask_removal(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
) -> None:
    await query.answer()
    listing = await accounts.listing(link.shop_id)
    account = _account(listing, callback_data.option)
    if account is None:
        await bot.send_message(link.chat_id, GONE)
        await _back(bot, link, state, accounts, callback_data.page)
        return
    await state.set_state(SettingsSteps.page)
    heirs = await accounts.heirs(link.shop_id, account["id"])
    consequences = " ".join(removal_consequences(heirs))
    text = REMOVE_WHAT.format(account=account_name(account), consequences=consequences)
    page = callback_data.page
    keyboard = settings_buttons_keyboard(
        page, [(YES_REMOVE, REMOVE_CONFIRMED, 0, account["id"]), (KEEP, SHOW, 0, 0)]
    )
    await bot.send_message(link.chat_id, text, reply_markup=keyboard)


async def remove(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
) -> None:
    await query.answer()
    listing = await accounts.listing(link.shop_id)
    account = _account(listing, callback_data.option)
    heirs = await accounts.heirs(link.shop_id, account["id"]) if account else {}
    if account is None or not await accounts.remove(link.shop_id, account["id"]):
        await bot.send_message(link.chat_id, GONE)
    else:
        consequences = " ".join(removal_consequences(heirs))
        text = REMOVED.format(account=account_name(account), consequences=consequences)
        await bot.send_message(link.chat_id, text)
    await _back(bot, link, state, accounts, callback_data.page)


def _account(listing: dict[str, Any], account_id: int) -> dict[str, Any] | None:
    return next((a for a in listing["accounts"] if a["id"] == account_id), None)


async def _back(
    bot: Bot, link: ChatLink, state: FSMContext, accounts: AccountDesk, page: int
) -> None:
    data = await state.get_data()
    page = page if 0 <= page < len(PAGES) else data["page"]
    await show_page(bot, link, state, accounts, page, data["draft"])
