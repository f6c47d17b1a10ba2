"""Linking a chat to a shop: `/start <code>`, or `/start` and then the code; `/cancel`."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from flows.shops.bot_links import ChatLink, ChatLinks, Linking, Outcome


class LinkSteps(StatesGroup):
    code = State()


ASK_CODE = (
    "Hello! To link this chat to your shop, send me the link code you were given when the "
    "shop was created (or the invitation code from the shop's owner)."
)
ASK_AGAIN = "Send the code again, or /cancel."
CANCELLED = "Cancelled."
LINKED = "This chat is now linked to {shop} as {role}. /help lists what you can do here."
ALREADY = "This chat is already linked to {shop} as {role}. /help lists what you can do here."
EXPLAIN = {
    Outcome.USED: "That code was used already: each code links one chat, once. Ask the "
    "shop's owner for a new invitation (or the platform for a new owner code).",
    Outcome.EXPIRED: "That code has expired (codes are valid for 24 hours). Ask the shop's "
    "owner for a new invitation (or the platform for a new owner code).",
    Outcome.WRONG: "That is not a link code I know. Check it and send it again: it is the "
    "10 letters and digits you were given.",
    Outcome.LINKED_ELSEWHERE: "This chat already acts for {shop}: a chat acts for one shop. "
    "Use another chat to join another shop.",
}


def router() -> Router:
    router = Router(name="link")
    router.message.register(start, CommandStart())
    router.message.register(cancel, Command("cancel"))
    # A command while the code is awaited is that command, not a code.
    router.message.register(code_sent, LinkSteps.code, F.text, ~F.text.startswith("/"))
    return router


async def start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    link: ChatLink | None,
    links: ChatLinks,
) -> None:
    if command.args:
        await _link(message, command.args, state, links)
    elif link is not None:
        await state.clear()
        await message.answer(ALREADY.format(shop=link.shop_name, role=link.role))
    else:
        await state.set_state(LinkSteps.code)
        await message.answer(ASK_CODE)


async def code_sent(message: Message, state: FSMContext, links: ChatLinks) -> None:
    assert message.text is not None  # the filter
    await _link(message, message.text, state, links)


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(CANCELLED)


async def _link(message: Message, code: str, state: FSMContext, links: ChatLinks) -> None:
    user = message.from_user
    name = user.full_name if user is not None else ""
    linking = await links.link(message.chat.id, user.id if user else None, name, code)
    await message.answer(_answer(linking))
    if linking.link is None:  # not linked yet: the code is asked again
        await state.set_state(LinkSteps.code)
        await message.answer(ASK_AGAIN)
    else:
        await state.clear()


def _answer(linking: Linking) -> str:
    link = linking.link
    if linking.outcome is Outcome.LINKED and link is not None:
        return LINKED.format(shop=link.shop_name, role=link.role)
    if linking.outcome is Outcome.ALREADY_LINKED and link is not None:
        return ALREADY.format(shop=link.shop_name, role=link.role)
    return EXPLAIN[linking.outcome].format(shop=link.shop_name if link else "")
