"""Router filters on the chat's link (see `bot.middlewares`)."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from flows.shops.bot_links import ChatLink


class Linked(Filter):
    """The chat acts for a shop; with `manages_agents`, as the one who manages its agents."""

    def __init__(self, *, manages_agents: bool = False) -> None:
        self.manages_agents = manages_agents

    async def __call__(self, event: TelegramObject, link: ChatLink | None) -> bool:
        if link is None:
            return False
        return link.manages_agents or not self.manages_agents


class Unlinked(Filter):
    """No shop has linked the chat."""

    async def __call__(self, event: TelegramObject, link: ChatLink | None) -> bool:
        return link is None
