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
    builder = InlineKeyboardBuilder()
    for row in rows:
        builder.row(
            *(InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row)
        )
    return builder.as_markup()
