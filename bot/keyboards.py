"""Inline keyboards and the callback data their buttons carry."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
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
