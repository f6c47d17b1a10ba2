"""The owner's team: `/invite` gives a one-time code that links an agent's chat, `/agents`
lists the agents with a button to remove each. Other roles are told these are the owner's."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.filters import Linked
from bot.keyboards import REMOVE, AgentAction, agents_keyboard
from flows.shops.bot_links import Agent, ChatLink, ChatLinks

_LOGGER = logging.getLogger(__name__)

INVITED = (
    "Invitation for an agent of {shop}, valid once until {expires} UTC:\n\n{code}\n\n"
    "The agent opens {url} or sends me /start {code}."
)
NO_AGENTS = "{shop} has no agents yet. /invite gives a code that links an agent's chat."
AGENTS = "Agents of {shop}:\n{names}"
REMOVED = "Removed {name}."
GONE = "That agent is not linked to your shop (any more)."
YOU_WERE_REMOVED = "The owner of {shop} removed this chat: it no longer acts for the shop."
OWNER_ONLY = "Only the shop's owner invites and removes agents."


def router() -> Router:
    router = Router(name="agents")
    owner = Linked(manages_agents=True)
    router.message.register(invite, Command("invite"), owner)
    router.message.register(list_agents, Command("agents"), owner)
    router.callback_query.register(remove, AgentAction.filter(F.action == REMOVE), owner)
    router.message.register(owner_only, Command("invite", "agents"), Linked())
    router.callback_query.register(owner_only_button, AgentAction.filter(), Linked())
    return router


async def invite(message: Message, bot: Bot, link: ChatLink, links: ChatLinks) -> None:
    invitation = await links.invite(link)
    me = await bot.me()
    await message.answer(
        INVITED.format(
            shop=link.shop_name,
            expires=invitation.expires_at.strftime("%Y-%m-%d %H:%M"),
            code=invitation.code,
            url=f"https://t.me/{me.username}?start={invitation.code}",
        )
    )


async def list_agents(message: Message, link: ChatLink, links: ChatLinks) -> None:
    agents = await links.agents(link)
    await message.answer(_agents_text(link, agents), reply_markup=agents_keyboard(agents))


async def remove(
    query: CallbackQuery, callback_data: AgentAction, bot: Bot, link: ChatLink, links: ChatLinks
) -> None:
    removed = await links.remove_agent(link, callback_data.link_id)
    if removed is None:
        await query.answer(GONE, show_alert=True)
        return
    await query.answer(REMOVED.format(name=removed.name or removed.chat_id))
    await _tell_removed(bot, removed, link)
    if query.message is not None:
        agents = await links.agents(link)
        await bot.edit_message_text(
            _agents_text(link, agents),
            chat_id=link.chat_id,
            message_id=query.message.message_id,
            reply_markup=agents_keyboard(agents),
        )


async def owner_only(message: Message) -> None:
    await message.answer(OWNER_ONLY)


async def owner_only_button(query: CallbackQuery) -> None:
    await query.answer(OWNER_ONLY, show_alert=True)


def _agents_text(link: ChatLink, agents: list[Agent]) -> str:
    if not agents:
        return NO_AGENTS.format(shop=link.shop_name)
    names = "\n".join(
        f"- {agent.name or agent.chat_id} (since {agent.linked_at:%Y-%m-%d})" for agent in agents
    )
    return AGENTS.format(shop=link.shop_name, names=names)


async def _tell_removed(bot: Bot, agent: Agent, link: ChatLink) -> None:
    try:
        await bot.send_message(agent.chat_id, YOU_WERE_REMOVED.format(shop=link.shop_name))
    except TelegramAPIError as exc:  # the agent blocked the bot, or deleted the chat
        _LOGGER.info("could not tell chat %s it was removed: %s", agent.chat_id, exc)
