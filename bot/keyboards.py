"""Inline keyboards and the callback data their buttons carry."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from flows.shops.bot_links import Agent


class AgentAction(CallbackData, prefix="agent"):
    action: str
    link_id: int


REMOVE = "remove"


def agents_keyboard(agents: list[Agent]) -> InlineKeyboardMarkup | None:
    """One "Remove" button per agent."""
    if not agents:
        return None
    builder = InlineKeyboardBuilder()
    for agent in agents:
        builder.button(
            text=f"Remove {agent.name or agent.chat_id}",
            callback_data=AgentAction(action=REMOVE, link_id=agent.link_id),
        )
    builder.adjust(1)
    return builder.as_markup()


class ReportAction(CallbackData, prefix="report"):
    """A button under a report: a filter (`name`, `value`), paging, an export."""

    action: str
    name: str = ""
    value: str = ""


class OrderTap(CallbackData, prefix="order"):
    """A button that opens an order's card, or acts on the order (`action`, `value`)."""

    number: int
    action: str = "show"
    value: str = ""


def rows_keyboard(rows: list[list[tuple[str, CallbackData]]]) -> InlineKeyboardMarkup:
    """Buttons laid out in the given rows of (text, callback data)."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row]
            for row in rows
        ]
    )


class SettingsAction(CallbackData, prefix="settings"):
    """A tap in the `/settings` conversation: `page` it was shown on, `item` the value asked
    (its index on the page, or in the account's fields), `option` the choice picked."""

    action: str
    page: int = 0
    item: int = 0
    option: int = 0


ASK, PICK, PREV, PROCEED, FINISH = "ask", "pick", "prev", "proceed", "finish"
CONNECT, PLATFORM, ACCOUNT_PICK = "connect", "platform", "account_pick"
SHOW = "show"  # back to the page
# The channels page: an account carries a channel (item: the channel, option: the account).
CARRY, REMOVE_ACCOUNT, REMOVE_CONFIRMED = "carry", "remove_account", "remove_confirmed"
# The WhatsApp notifications page (item: the event).
WHATSAPP, ENABLE, DISABLE, ACCEPT_CHARGE = "whatsapp", "enable", "disable", "accept_charge"

# A page's own button: (text, action, item, option).
PageButton = tuple[str, str, int, int]


def settings_page_keyboard(
    page: int, labels: list[str], *, first: bool, last: bool, accounts: list[PageButton]
) -> InlineKeyboardMarkup:
    """A button per value of the page (and per account to connect or channel to choose),
    then Prev / Save and proceed / Save and finish."""
    builder = InlineKeyboardBuilder()
    for item, label in enumerate(labels):
        builder.button(text=label, callback_data=SettingsAction(action=ASK, page=page, item=item))
    for text, action, item, option in accounts:
        builder.button(
            text=text,
            callback_data=SettingsAction(action=action, page=page, item=item, option=option),
        )
    sizes = [2] * (len(labels) // 2) + [1] * (len(labels) % 2 + len(accounts))
    navigation = []
    if not first:
        navigation.append(("« Prev", PREV))
    if not last:
        navigation.append(("Save and proceed »", PROCEED))
    navigation.append(("Save and finish", FINISH))
    for text, action in navigation:
        builder.button(text=text, callback_data=SettingsAction(action=action, page=page))
    builder.adjust(*sizes, len(navigation))
    return builder.as_markup()


def settings_choices_keyboard(
    action: str, page: int, item: int, labels: list[str]
) -> InlineKeyboardMarkup:
    """One button per choice of a value."""
    builder = InlineKeyboardBuilder()
    for option, label in enumerate(labels):
        builder.button(
            text=label,
            callback_data=SettingsAction(action=action, page=page, item=item, option=option),
        )
    builder.adjust(1)
    return builder.as_markup()


def settings_buttons_keyboard(page: int, buttons: list[PageButton]) -> InlineKeyboardMarkup:
    """A question's buttons, one a row: (text, action, item, option)."""
    builder = InlineKeyboardBuilder()
    for text, action, item, option in buttons:
        builder.button(
            text=text,
            callback_data=SettingsAction(action=action, page=page, item=item, option=option),
        )
    builder.adjust(1)
    return builder.as_markup()
