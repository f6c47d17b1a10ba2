"""The `/settings` WhatsApp notifications page's buttons and answers: an event's notification
enabled with its template id and the token of each variable, or disabled, through the same
use case as `PUT /api/v1/notifications/whatsapp/{event}` (seed 002). The template is checked
live with the shop's own Gupshup, a refusal explained and asked again; on the platform's
account the merchant first accepts its per-message charge. The choice is saved at once."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.filters import Linked
from bot.handlers.settings import (
    GONE,
    NOT_SAVED,
    PROVIDER_DOWN,
    SettingsSteps,
    page_buttons,
    show_page,
)
from bot.keyboards import (
    ACCEPT_CHARGE,
    DISABLE,
    ENABLE,
    SHOW,
    WHATSAPP,
    SettingsAction,
    settings_buttons_keyboard,
)
from bot.settings_pages import EMPTY, PAGES, event_name, get, put, whatsapp_line
from flows.channels.account_desk import AccountDesk
from flows.notifications import choices
from flows.notifications.choices import Refused, WhatsAppChoice, WhatsAppNotices
from flows.notifications.events import EVENTS
from flows.notifications.templates import TOKENS
from flows.shops.bot_links import ChatLink
from flows.shops.settings import SettingsError
from providers.base import ProviderError

ENABLE_BUTTON = "Enable with a template"
DISABLE_BUTTON = "Disable"
BACK = "Back to the page"
ASK_TEMPLATE = (
    "Send the WhatsApp template id for {event} (the id of an APPROVED template of your "
    "WhatsApp account). /cancel stops."
)
ASK_PARAMS = (
    "Send the token of each of the template's variables, {{{{1}}}} first, comma-separated "
    "(e.g. firstname, ordername, trackingurl), or {empty} when it has none. Tokens: {tokens}. "
    "/cancel stops."
)
NOT_ENABLED = "Not enabled: {problem}."
NO_ACCOUNT_HINT = "Connect a WhatsApp account on the Provider accounts page first."
ASK_CHARGE = (
    "{event} would go through the platform's WhatsApp account, which charges per message "
    "sent. Do you accept the per-message charge?"
)
ACCEPT_BUTTON = "Accept the per-message charge"
NOT_NOW = "Not now"
ENABLED = "Enabled and saved: {event} goes on WhatsApp with the template {template_id} ({status})."
PREVIEW = "Preview with sample values:\n{preview}"
DISABLED = "Disabled and saved: {event} no longer goes on WhatsApp."


def router() -> Router:
    router = page_buttons(
        "settings_notifications",
        {WHATSAPP: event_menu, ENABLE: enable, DISABLE: disable, ACCEPT_CHARGE: accept_charge},
    )
    router.message.register(
        typed, SettingsSteps.whatsapp, Linked(manages_agents=True), F.text, ~F.text.startswith("/")
    )
    return router


async def event_menu(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
) -> None:
    await query.answer()
    data = await state.get_data()
    event = _event(callback_data.item)
    if event is None:
        await _gone(bot, link, state, accounts, callback_data.page)
        return
    await state.set_state(SettingsSteps.page)
    item, page = callback_data.item, callback_data.page
    buttons = [(ENABLE_BUTTON, ENABLE, item, 0)]
    if get(data["draft"], f"{_path(event)}.active"):
        buttons.append((DISABLE_BUTTON, DISABLE, item, 0))
    buttons.append((BACK, SHOW, 0, 0))
    text = f"{whatsapp_line(data['draft'], event)}."
    await bot.send_message(
        link.chat_id, text, reply_markup=settings_buttons_keyboard(page, buttons)
    )


async def enable(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
) -> None:
    await query.answer()
    event = _event(callback_data.item)
    if event is None:
        await _gone(bot, link, state, accounts, callback_data.page)
        return
    await state.update_data(whatsapp={"event": event, "page": _page(callback_data.page)})
    await _ask_template(bot, link, state, event)


async def typed(
    message: Message,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
    whatsapp_notices: WhatsAppNotices,
) -> None:
    assert message.text is not None  # the filter
    data = await state.get_data()
    asked = data.get("whatsapp")
    if not asked:
        await show_page(bot, link, state, accounts, data["page"], data["draft"])
        return
    if "template_id" not in asked:
        await state.update_data(whatsapp=asked | {"template_id": message.text.strip()})
        await _ask_params(bot, link, state)
        return
    params = [] if message.text.strip() == EMPTY else _tokens(message.text)
    await state.update_data(whatsapp=asked | {"params": params})
    await _try(bot, link, state, accounts, whatsapp_notices, accept_charge=False)


async def accept_charge(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
    whatsapp_notices: WhatsAppNotices,
) -> None:
    await query.answer()
    asked = (await state.get_data()).get("whatsapp") or {}
    if "params" not in asked:
        await _gone(bot, link, state, accounts, callback_data.page)
        return
    await _try(bot, link, state, accounts, whatsapp_notices, accept_charge=True)


async def disable(
    query: CallbackQuery,
    callback_data: SettingsAction,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    accounts: AccountDesk,
    whatsapp_notices: WhatsAppNotices,
) -> None:
    await query.answer()
    event = _event(callback_data.item)
    if event is None:
        await _gone(bot, link, state, accounts, callback_data.page)
        return
    draft = (await state.get_data())["draft"]
    notice = get(draft, _path(event))
    choice = WhatsAppChoice(
        False, notice["template_id"], tuple(notice["params"]), notice["fallback_to_sms"]
    )
    await state.update_data(whatsapp={"event": event, "page": _page(callback_data.page)})
    await _choose(bot, link, state, accounts, whatsapp_notices, choice)


async def _try(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    desk: AccountDesk,
    notices: WhatsAppNotices,
    *,
    accept_charge: bool,
) -> None:
    data = await state.get_data()
    asked = data["whatsapp"]
    fallback = get(data["draft"], f"{_path(asked['event'])}.fallback_to_sms")
    choice = WhatsAppChoice(
        True,
        asked["template_id"],
        tuple(asked["params"]),
        fallback is not False,
        accept_charge,
    )
    await _choose(bot, link, state, desk, notices, choice)


async def _choose(
    bot: Bot,
    link: ChatLink,
    state: FSMContext,
    desk: AccountDesk,
    notices: WhatsAppNotices,
    choice: WhatsAppChoice,
) -> None:
    data = await state.get_data()
    asked = data["whatsapp"]
    event, name = asked["event"], event_name(asked["event"])
    try:
        chosen = await notices.choose(link.shop_id, event, choice)
    except Refused as refused:
        await _refused(bot, link, state, desk, refused)
        return
    except (SettingsError, ProviderError) as exc:
        if isinstance(exc, SettingsError):
            listed = "\n".join(f"- {p.field}: {p.message}" for p in exc.problems)
            text = NOT_SAVED.format(problems=listed)
        else:
            text = PROVIDER_DOWN.format(problem=exc)
        await bot.send_message(link.chat_id, text)
        await _page_again(bot, link, state, desk)
        return
    saved = chosen.settings.notifications
    draft = put(data["draft"], _path(event), saved.notice(event).whatsapp.model_dump(mode="json"))
    draft = put(draft, "notifications.whatsapp_charge_accepted", saved.whatsapp_charge_accepted)
    if chosen.template is None:
        await bot.send_message(link.chat_id, DISABLED.format(event=name))
    else:
        text = ENABLED.format(
            event=name, template_id=choice.template_id.strip(), status=chosen.template.status
        )
        await bot.send_message(link.chat_id, f"{text}\n\n{PREVIEW.format(preview=chosen.preview)}")
    await state.update_data(draft=draft, whatsapp=None)
    await show_page(bot, link, state, desk, asked["page"], draft)


async def _refused(
    bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk, refused: Refused
) -> None:
    asked = (await state.get_data())["whatsapp"]
    event = asked["event"]
    if refused.code == choices.CHARGE:
        await state.set_state(SettingsSteps.page)
        buttons = [
            (ACCEPT_BUTTON, ACCEPT_CHARGE, EVENTS.index(event), 0),
            (NOT_NOW, SHOW, 0, 0),
        ]
        await bot.send_message(
            link.chat_id,
            ASK_CHARGE.format(event=event_name(event)),
            reply_markup=settings_buttons_keyboard(asked["page"], buttons),
        )
        return
    text = NOT_ENABLED.format(problem=refused.message)
    if refused.field == "template_id":
        await bot.send_message(link.chat_id, text)
        await state.update_data(whatsapp={"event": event, "page": asked["page"]})
        await _ask_template(bot, link, state, event)
    elif refused.field == "params":
        await bot.send_message(link.chat_id, text)
        await state.update_data(whatsapp={k: v for k, v in asked.items() if k != "params"})
        await _ask_params(bot, link, state)
    else:  # no WhatsApp account to carry it
        await bot.send_message(link.chat_id, f"{text} {NO_ACCOUNT_HINT}")
        await _page_again(bot, link, state, desk)


async def _ask_template(bot: Bot, link: ChatLink, state: FSMContext, event: str) -> None:
    await state.set_state(SettingsSteps.whatsapp)
    await bot.send_message(link.chat_id, ASK_TEMPLATE.format(event=event_name(event)))


async def _ask_params(bot: Bot, link: ChatLink, state: FSMContext) -> None:
    await state.set_state(SettingsSteps.whatsapp)
    text = ASK_PARAMS.format(empty=EMPTY, tokens=", ".join(TOKENS))
    await bot.send_message(link.chat_id, text)


async def _page_again(bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk) -> None:
    data = await state.get_data()
    page = (data.get("whatsapp") or {}).get("page", data["page"])
    await state.update_data(whatsapp=None)
    await show_page(bot, link, state, desk, page, data["draft"])


async def _gone(bot: Bot, link: ChatLink, state: FSMContext, desk: AccountDesk, page: int) -> None:
    await bot.send_message(link.chat_id, GONE)
    data = await state.get_data()
    await show_page(bot, link, state, desk, _page(page, data["page"]), data["draft"])


def _event(item: int) -> str | None:
    return EVENTS[item] if 0 <= item < len(EVENTS) else None


def _page(page: int, default: int = len(PAGES) - 1) -> int:
    return page if 0 <= page < len(PAGES) else default


def _path(event: str) -> str:
    return f"notifications.events.{event}.whatsapp"


def _tokens(text: str) -> list[str]:
    """The typed tokens, as bare names whether written `firstname`, `%city%` or
    `[[firstname]]`."""
    return [part.strip().strip("%[]") for part in text.split(",") if part.strip()]
