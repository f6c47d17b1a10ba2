"""`/settings`: the owner's guided conversation through the shop's settings, page by page as
seed 000 lays them out (`bot.settings_pages`), connecting provider accounts on the way, then
the customers' notifications. The buttons of the Channels page are handled in
`bot.handlers.channels`, those of the WhatsApp notifications page in `bot.handlers.notifications`.

Each answer is checked by the settings model's own rules and a wrong one is explained with the
rule's message and asked again; Save stores the whole document through the same use cases as
`PUT /api/v1/shop/settings` (a newly enabled WhatsApp notification is checked live), and an
account is connected through the same account desk as `POST /api/v1/shop/accounts`, checked
live with the provider. The conversation is kept in the FSM storage, so it survives a restart;
a message carrying a secret is deleted once read, and the secret stays sealed with the app's
key until the check.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.handler import CallbackType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.filters import Linked
from bot.handlers.status import status_text
from bot.keyboards import (
    ACCOUNT_PICK,
    ASK,
    CARRY,
    CONNECT,
    FINISH,
    PICK,
    PLATFORM,
    PREV,
    PROCEED,
    REMOVE_ACCOUNT,
    SHOW,
    WHATSAPP,
    PageButton,
    SettingsAction,
    settings_choices_keyboard,
    settings_page_keyboard,
)
from bot.settings_pages import (
    ACCOUNT_ASKS,
    PAGES,
    PROVIDER_NAMES,
    Ask,
    account_name,
    channel_choices,
    channel_lines,
    event_name,
    get,
    put,
    whatsapp_line,
)
from flows.channels import accounts
from flows.channels.account_desk import AccountDesk
from flows.channels.accounts import AccountError
from flows.notifications import preview
from flows.notifications.choices import Refused, WhatsAppNotices
from flows.notifications.events import EVENTS
from flows.shops import config as shop_config
from flows.shops.bot_links import ChatLink
from flows.shops.settings import FieldProblem, SettingsError, validate_settings
from providers.base import ProviderError

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

OWNER_ONLY = "The settings are the owner's: only the shop's owner changes them, with /settings."
HEADER = "Settings {number}/{count}: {title}"
TAP = "Tap a value to change it."
CHANNEL_LINE = "{channel}: {carrier}"
CONNECT_HINT = "Connect an account of your own (checked with the provider), or use the platform's."
ASK_TYPED = "Send the {label} (now: {value}){hint}. /cancel stops."
ASK_FIELD = "Send the {label}{hint}. /cancel stops."
ASK_SECRET = "Send the {label}{hint}. I delete your message once I have read it. /cancel stops."
ASK_CHOICE = "{label} (now: {value}):"
ASK_ACCOUNT_CHOICE = "{label}:"
WRONG = "{label} not accepted: {problems}."
NOT_SAVED = "Not saved:\n{problems}"
SAVED = "Saved."
CONNECTED = "Connected: the {provider} account carries {channels}."
REFUSED = "The {provider} account was not connected:\n{problems}"
TAP_INSTEAD = "Tap a value of the page to change it, or Save; /cancel stops."
GONE = "That is no longer on the page: here it is again."
CHANNELS_HINT = "Tap an account to have it carry a channel, or remove an account."
WHATSAPP_HINT = (
    "Tap an event to enable its WhatsApp notification (with its template) or disable it."
)
PREVIEW = (
    "Preview with sample values:\n{text}\n\n{encoding}, {characters} characters: "
    "{segments} segment(s), {credits} credit(s) per message."
)
SHOWN_LENGTH = 150
PROVIDER_DOWN = "The WhatsApp provider did not answer ({problem}): try again in a moment."


class SettingsSteps(StatesGroup):
    page = State()  # a page is shown, its buttons wait
    value = State()  # a typed value of the page is awaited
    account = State()  # a typed field of the account being connected is awaited
    whatsapp = State()  # a WhatsApp notification's template id or its tokens are awaited


def router() -> Router:
    router = Router(name="settings")
    owner = Linked(manages_agents=True)
    typed = (F.text, ~F.text.startswith("/"))
    router.message.register(start, Command("settings"), owner)
    router.message.register(owner_only, Command("settings"), Linked())
    router.message.register(value_typed, SettingsSteps.value, owner, *typed)
    router.message.register(account_typed, SettingsSteps.account, owner, *typed)
    router.message.register(tap_instead, SettingsSteps.page, owner, *typed)
    router.callback_query.register(
        tapped, SettingsAction.filter(), owner, StateFilter(SettingsSteps)
    )
    # The owner's buttons of a conversation that is over fall through to "no longer in use".
    router.callback_query.register(owner_only_button, SettingsAction.filter(), Linked(), ~owner)
    return router


def page_buttons(name: str, handlers: Mapping[str, CallbackType]) -> Router:
    """A router for one page's buttons: each `SettingsAction` action to its handler, for the
    owner inside a settings conversation."""
    router = Router(name=name)
    for action, handler in handlers.items():
        router.callback_query.register(
            handler,
            SettingsAction.filter(F.action == action),
            Linked(manages_agents=True),
            StateFilter(SettingsSteps),
        )
    return router


async def owner_only(message: Message) -> None:
    await message.answer(OWNER_ONLY)


async def owner_only_button(query: CallbackQuery) -> None:
    await query.answer(OWNER_ONLY, show_alert=True)


async def tap_instead(message: Message) -> None:
    await message.answer(TAP_INSTEAD)


async def start(
    message: Message, bot: Bot, state: FSMContext, link: ChatLink, accounts: AccountDesk
) -> None:
    document, country = await shop_config.editing(accounts.db, link.shop_id)
    await state.set_state(SettingsSteps.page)
    await state.set_data({"page": 0, "draft": document, "country": country})
    await _show(bot, link, accounts, 0, document)


async def tapped(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
    whatsapp_notices: WhatsAppNotices,
) -> None:
    await query.answer()
    data = await state.get_data()
    draft: dict[str, Any] = data["draft"]
    index, action = callback_data.page, callback_data.action
    if not 0 <= index < len(PAGES):
        await bot.send_message(link.chat_id, GONE)
        index = data["page"]
    item, option = callback_data.item, callback_data.option
    ask = _at(PAGES[index].asks(draft), item)
    account = data.get("account")
    account_ask = _at(ACCOUNT_ASKS[account["provider"]], item) if account else None
    if action == ASK and ask is not None:
        await _ask(bot, link, state, index, item, ask, draft)
    elif action == PICK and ask is not None and (choice := _at(ask.choices, option)):
        await _answer(bot, link, state, accounts, index, item, ask, choice[1])
    elif action == PREV:
        await show_page(bot, link, state, accounts, max(index - 1, 0), draft)
    elif action == SHOW:
        await show_page(bot, link, state, accounts, index, draft)
    elif action in (PROCEED, FINISH):
        await _save(
            bot, link, state, accounts, whatsapp_notices, index, draft, finish=action == FINISH
        )
    elif action == CONNECT and (provider := _at(list(ACCOUNT_ASKS), option)):
        await state.update_data(page=index, account={"provider": provider, "sealed": ""})
        await _ask_account(bot, link, state, accounts)
    elif action == PLATFORM:
        await _connect_platform(bot, link, state, accounts, index, option)
    elif action == ACCOUNT_PICK and account_ask and (choice := _at(account_ask.choices, option)):
        await _account_answer(bot, link, state, accounts, account_ask, choice[1])
    else:
        await bot.send_message(link.chat_id, GONE)
        await show_page(bot, link, state, accounts, index, draft)


async def value_typed(
    message: Message, bot: Bot, state: FSMContext, link: ChatLink, accounts: AccountDesk
) -> None:
    assert message.text is not None  # the filter
    data = await state.get_data()
    index, draft = data["page"], data["draft"]
    asks = PAGES[index].asks(draft)
    item = next((i for i, ask in enumerate(asks) if ask.path == data.get("asking")), None)
    if item is None:
        await show_page(bot, link, state, accounts, index, draft)
        return
    value = asks[item].read(message.text)
    await _answer(bot, link, state, accounts, index, item, asks[item], value)


async def account_typed(
    message: Message, bot: Bot, state: FSMContext, link: ChatLink, accounts: AccountDesk
) -> None:
    assert message.text is not None  # the filter
    data = await state.get_data()
    account = data.get("account")
    asks = ACCOUNT_ASKS[account["provider"]] if account else ()
    ask = next((a for a in asks if a.path == data.get("asking")), None)
    if ask is not None and ask.secret:
        await _delete(message)
    if ask is None:
        await show_page(bot, link, state, accounts, data["page"], data["draft"])
        return
    await _account_answer(bot, link, state, accounts, ask, ask.read(message.text))


# -- pages ----------------------------------------------------------------------------------


async def _show(
    bot: Bot, link: ChatLink, desk: AccountDesk, index: int, draft: dict[str, Any]
) -> None:
    page = PAGES[index]
    asks = page.asks(draft)
    lines = [HEADER.format(number=index + 1, count=len(PAGES), title=page.title), ""]
    lines += [_shown(f"{ask.label}: {ask.shown(get(draft, ask.path))}") for ask in asks]
    buttons: list[PageButton] = []
    if page.accounts:
        listing = await desk.listing(link.shop_id)
        for channel, chosen in listing["channels"].items():
            carrier = f"{chosen['owner']} {chosen['provider']} account" if chosen else "no account"
            lines.append(CHANNEL_LINE.format(channel=channel, carrier=carrier))
        lines += ["", CONNECT_HINT]
        buttons += [
            (f"Connect {PROVIDER_NAMES[provider]}", CONNECT, 0, option)
            for option, provider in enumerate(ACCOUNT_ASKS)
        ]
        buttons += [
            (
                f"Use the platform's {PROVIDER_NAMES[offer['provider']]} "
                f"({', '.join(offer['channels'])})",
                PLATFORM,
                0,
                option,
            )
            for option, offer in enumerate(listing["platform"])
        ]
    if page.channels:
        listing = await desk.listing(link.shop_id)
        lines += [*channel_lines(listing), "", CHANNELS_HINT]
        buttons += [(text, CARRY, item, id_) for text, item, id_ in channel_choices(listing)]
        buttons += [
            (f"Remove the {account_name(account)}", REMOVE_ACCOUNT, 0, account["id"])
            for account in listing["accounts"]
        ]
    if page.whatsapp:
        lines += [whatsapp_line(draft, event) for event in EVENTS]
        lines += ["", WHATSAPP_HINT]
        buttons += [
            (f"WhatsApp: {event_name(event)}", WHATSAPP, item, 0)
            for item, event in enumerate(EVENTS)
        ]
    if asks:
        lines += ["", TAP]
    keyboard = settings_page_keyboard(
        index,
        [ask.label for ask in asks],
        first=index == 0,
        last=index == len(PAGES) - 1,
        accounts=buttons,
    )
    await bot.send_message(link.chat_id, "\n".join(lines), reply_markup=keyboard)


async def show_page(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    desk: AccountDesk,
    index: int,
    draft: dict[str, Any],
) -> None:
    await state.set_state(SettingsSteps.page)
    await state.update_data(page=index, draft=draft, asking=None, account=None)
    await _show(bot, link, desk, index, draft)


async def _ask(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    index: int,
    item: int,
    ask: Ask,
    draft: dict[str, Any],
) -> None:
    now = ask.shown(get(draft, ask.path))
    if ask.choices:
        await state.set_state(SettingsSteps.page)
        keyboard = _choices(PICK, index, item, ask)
        text = ASK_CHOICE.format(label=ask.label, value=now)
        await bot.send_message(link.chat_id, text, reply_markup=keyboard)
        return
    await state.set_state(SettingsSteps.value)
    await state.update_data(page=index, asking=ask.path)
    text = ASK_TYPED.format(label=ask.label, value=now, hint=_hint(ask))
    await bot.send_message(link.chat_id, text)


async def _answer(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    desk: AccountDesk,
    index: int,
    item: int,
    ask: Ask,
    value: Any,
) -> None:
    data = await state.get_data()
    candidate = put(data["draft"], ask.path, value)
    problems = _problems_of(candidate, ask.path, data["country"])
    if problems:
        await bot.send_message(
            link.chat_id, WRONG.format(label=ask.label, problems="; ".join(problems))
        )
        await _ask(bot, link, state, index, item, ask, data["draft"])
        return
    if ask.preview:
        await bot.send_message(link.chat_id, preview_text(value))
    await show_page(bot, link, state, desk, index, candidate)


def preview_text(text: str) -> str:
    """An SMS template filled with the sample values, with what it costs."""
    return PREVIEW.format(**preview.sms_preview(text, preview.values_for_preview(None)))


def _problems_of(document: dict[str, Any], path: str, country: str) -> list[str]:
    """What the settings' rules say of the value at `path` (the rules that span fields and
    name another one are told at Save)."""
    try:
        validate_settings(document, country=country)
    except SettingsError as exc:
        return [p.message for p in exc.problems if _names(p, path)]
    return []


async def _save(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    desk: AccountDesk,
    notices: WhatsAppNotices,
    index: int,
    draft: dict[str, Any],
    *,
    finish: bool,
) -> None:
    count = functools.partial(desk.template_variables, link.shop_id)
    try:
        await notices.check_document(link.shop_id, draft)
        saved = await shop_config.save(desk.db, desk.box, desk.clock, link.shop_id, draft, count)
    except (SettingsError, Refused, ProviderError) as exc:
        listed = "\n".join(_not_saved(exc))
        await bot.send_message(link.chat_id, NOT_SAVED.format(problems=listed))
        await show_page(bot, link, state, desk, index, draft)
        return
    if finish:
        await state.clear()
        setup = await desk.setup(link.shop_id)
        await bot.send_message(link.chat_id, f"{SAVED}\n\n{status_text(link, setup)}")
        return
    await show_page(bot, link, state, desk, min(index + 1, len(PAGES) - 1), saved.document())


def _not_saved(exc: Exception) -> list[str]:
    if isinstance(exc, SettingsError):
        return [f"- {p.field}: {p.message}" for p in exc.problems]
    if isinstance(exc, Refused):
        return [f"- {exc.document_field() or 'notifications'}: {exc.message}"]
    return [f"- {PROVIDER_DOWN.format(problem=exc)}"]


# -- provider accounts ----------------------------------------------------------------------


async def _ask_account(bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk) -> None:
    """Ask the account's next missing field, or check and connect it once all are in."""
    data = await state.get_data()
    account = data["account"]
    sealed = desk.box.open(account["sealed"])
    asks = ACCOUNT_ASKS[account["provider"]]
    missing = [
        i for i, ask in enumerate(asks) if ask.path not in account and ask.path not in sealed
    ]
    if not missing:
        await _connect_own(bot, link, state, desk)
        return
    item = missing[0]
    ask = asks[item]
    await state.set_state(SettingsSteps.account)
    await state.update_data(asking=ask.path)
    if ask.choices:
        keyboard = _choices(ACCOUNT_PICK, data["page"], item, ask)
        await bot.send_message(
            link.chat_id, ASK_ACCOUNT_CHOICE.format(label=ask.label), reply_markup=keyboard
        )
        return
    template = ASK_SECRET if ask.secret else ASK_FIELD
    await bot.send_message(link.chat_id, template.format(label=ask.label, hint=_hint(ask)))


async def _account_answer(
    bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk, ask: Ask, value: Any
) -> None:
    data = await state.get_data()
    account = dict(data["account"])
    sealed = desk.box.open(account["sealed"])
    if ask.secret:
        sealed[ask.path] = value
        account["sealed"] = desk.box.seal(sealed)
    else:
        account[ask.path] = value
    problems = _account_problems(_body(account, sealed), ask.path)
    if problems:
        await bot.send_message(
            link.chat_id, WRONG.format(label=ask.label, problems="; ".join(problems))
        )
    else:
        await state.update_data(account=account)
    await _ask_account(bot, link, state, desk)


def _account_problems(body: dict[str, Any], name: str) -> list[str]:
    """What the connect request's own rules say of the field `name` (before the live check)."""
    try:
        accounts.parse(body)
    except AccountError as exc:
        return [p.message for p in exc.problems if _names(p, name)]
    return []


async def _connect_own(bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk) -> None:
    data = await state.get_data()
    account = dict(data["account"])
    sealed = desk.box.open(account["sealed"])
    provider = account["provider"]
    try:
        connected = await desk.connect(link.shop_id, _body(account, sealed))
    except AccountError as exc:
        await _refused(bot, link, provider, exc)
        asks = ACCOUNT_ASKS[provider]
        again = next((a for p in exc.problems for a in asks if _names(p, a.path)), None)
        if again is None:  # the provider could not answer: the merchant tries later
            await show_page(bot, link, state, desk, data["page"], data["draft"])
            return
        sealed.pop(again.path, None)
        account.pop(again.path, None)
        account["sealed"] = desk.box.seal(sealed)
        await state.update_data(account=account)
        await _ask_account(bot, link, state, desk)
        return
    await _connected(bot, link, connected)
    await show_page(bot, link, state, desk, data["page"], data["draft"])


async def _connect_platform(
    bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk, index: int, option: int
) -> None:
    data = await state.get_data()
    offers = (await desk.listing(link.shop_id))["platform"]
    offer = _at(offers, option)
    if offer is not None:
        provider = offer["provider"]
        try:
            connected = await desk.connect(link.shop_id, {"provider": provider, "platform": True})
        except AccountError as exc:
            await _refused(bot, link, provider, exc)
        else:
            await _connected(bot, link, connected)
    await show_page(bot, link, state, desk, index, data["draft"])


async def _connected(bot: Bot, link: ChatLink, account: dict[str, Any]) -> None:
    provider = PROVIDER_NAMES[account["provider"]]
    channels = ", ".join(account["channels"]) or "no channel"
    await bot.send_message(link.chat_id, CONNECTED.format(provider=provider, channels=channels))


async def _refused(bot: Bot, link: ChatLink, provider: str, exc: AccountError) -> None:
    listed = "\n".join(f"- {p.field}: {p.message}" for p in exc.problems)
    text = REFUSED.format(provider=PROVIDER_NAMES[provider], problems=listed)
    await bot.send_message(link.chat_id, text)


def _body(account: dict[str, Any], sealed: dict[str, Any]) -> dict[str, Any]:
    """The connect request, as `POST /api/v1/shop/accounts` takes it."""
    plain = {name: value for name, value in account.items() if name != "sealed"}
    return plain | sealed


# -- helpers --------------------------------------------------------------------------------


def _at(items: Sequence[T], index: int) -> T | None:
    """The item at `index` of what a button was made from; None once it is gone."""
    return items[index] if 0 <= index < len(items) else None


def _names(problem: FieldProblem, path: str) -> bool:
    return problem.field == path or problem.field.startswith(f"{path}.")


def _shown(line: str) -> str:
    """A page's line, cut short: ten long SMS templates must fit one chat message."""
    return line if len(line) <= SHOWN_LENGTH else f"{line[: SHOWN_LENGTH - 1]}…"


def _hint(ask: Ask) -> str:
    return f": {ask.hint}" if ask.hint else ""


def _choices(action: str, index: int, item: int, ask: Ask) -> InlineKeyboardMarkup:
    return settings_choices_keyboard(action, index, item, [label for label, _ in ask.choices])


async def _delete(message: Message) -> None:
    try:
        await message.delete()
    except TelegramAPIError as exc:  # too old for a bot to delete, or already gone
        _LOGGER.warning("could not delete the message carrying a secret: %s", exc)
