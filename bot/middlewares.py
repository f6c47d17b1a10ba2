"""What every handler knows about the chat it answers: the shop it acts for and its role
(`link`, None for a chat no shop has linked), resolved once per update."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject

from flows.shops.bot_links import ChatLinks


class ChatLinkMiddleware(BaseMiddleware):
    def __init__(self, links: ChatLinks) -> None:
        self.links = links

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        data["link"] = await self.links.of_chat(chat.id) if chat is not None else None
        return await handler(event, data)
