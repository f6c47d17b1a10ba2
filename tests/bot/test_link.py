"""Linking chats to shops through the real bot, app and webhook route, against the fake Bot
API: the owner's one-time code (good, used, wrong, expired), agents invited and removed by the
owner, and chats that are not linked, or linked to another shop, getting nothing."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from bot.handlers import agents, fallback, link
from bot.keyboards import REMOVE, AgentAction
from storage.models import BotLink
from tests.bot.conftest import new_shop

OWNER, SECOND, STRANGER, AGENT = 1001, 1002, 1003, 1004


async def links(res) -> list[tuple[int, int, str]]:
    async with res.db.sessions() as session:
        rows = await session.scalars(select(BotLink).order_by(BotLink.id))
        return [(row.shop_id, row.chat_id, row.role) for row in rows]


def linked(shop: str, role: str) -> str:
    return link.LINKED.format(shop=shop, role=role)


async def test_a_good_code_links_the_owner_once_then_used_and_wrong_codes_are_explained(
    res, webhook, telegram
):
    shop = await new_shop(res, "demo")
    assert await telegram.type(OWNER, f"/start {shop.code}") == 200
    assert telegram.chat(OWNER).texts == [linked("demo", "owner")]
    assert await links(res) == [(shop.shop_id, OWNER, "owner")]

    await telegram.type(SECOND, f"/start {shop.code.lower()}")
    assert telegram.chat(SECOND).texts == [link.EXPLAIN[link.Outcome.USED], link.ASK_AGAIN]
    await telegram.type(STRANGER, "/start NOTACODE42")
    assert telegram.chat(STRANGER).texts == [link.EXPLAIN[link.Outcome.WRONG], link.ASK_AGAIN]
    # The owner's own code again: the chat is linked already, and stays so.
    await telegram.type(OWNER, f"/start {shop.code}")
    assert telegram.chat(OWNER).texts[-1] == link.EXPLAIN[link.Outcome.USED]
    assert await links(res) == [(shop.shop_id, OWNER, "owner")]


async def test_an_expired_code_is_explained_and_start_then_code_links(
    res, webhook, telegram, clock
):
    late = await new_shop(res, "late")
    clock.advance(timedelta(hours=24, seconds=1))
    await telegram.type(OWNER, f"/start {late.code}")
    assert telegram.chat(OWNER).texts == [link.EXPLAIN[link.Outcome.EXPIRED], link.ASK_AGAIN]

    shop = await new_shop(res, "demo")
    await telegram.type(SECOND, "/start")
    await telegram.type(SECOND, "/help")  # a command is not taken for the code
    await telegram.type(SECOND, "my code is?")
    await telegram.type(SECOND, f" {shop.code[:5]}-{shop.code[5:]} ")
    assert telegram.chat(SECOND).texts == [
        link.ASK_CODE,
        fallback.NOT_LINKED,
        link.EXPLAIN[link.Outcome.WRONG],
        link.ASK_AGAIN,
        linked("demo", "owner"),
    ]
    await telegram.type(SECOND, "/start")
    assert telegram.chat(SECOND).texts[-1] == link.ALREADY.format(shop="demo", role="owner")
    assert await links(res) == [(shop.shop_id, SECOND, "owner")]


async def test_an_unlinked_chat_gets_the_explanation_and_nothing_else(res, webhook, telegram):
    shop = await new_shop(res, "demo")
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/agents")
    listing = telegram.chat(OWNER).from_bot[-1]

    for text in ("/agents", "/invite", "/help", "hello", "/status"):
        await telegram.type(STRANGER, text)
    assert telegram.chat(STRANGER).texts == [fallback.NOT_LINKED] * 5
    # A button made up by the stranger (another chat's, or forged) acts on nothing.
    forged = AgentAction(action=REMOVE, link_id=1).pack()
    await telegram.type(STRANGER, "x")
    stranger_message = telegram.chat(STRANGER).from_bot[-1].message_id
    await telegram.press(STRANGER, stranger_message, forged)
    assert telegram.chat(STRANGER).callback_answers == [fallback.NOT_LINKED]
    assert "demo" not in " ".join(telegram.chat(STRANGER).texts)
    assert listing.edits == 0 and await links(res) == [(shop.shop_id, OWNER, "owner")]


async def test_the_owner_invites_an_agent_and_removes_it(res, webhook, telegram):
    shop = await new_shop(res, "demo")
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/invite")
    invitation = telegram.chat(OWNER).texts[-1]
    code = re.search(r"/start (\w+)", invitation).group(1)
    assert f"https://t.me/{telegram.username}?start={code}" in invitation

    await telegram.type(AGENT, f"/start {code}")
    assert telegram.chat(AGENT).texts == [linked("demo", "agent")]
    await telegram.type(SECOND, f"/start {code}")
    assert telegram.chat(SECOND).texts[0] == link.EXPLAIN[link.Outcome.USED]

    await telegram.type(AGENT, "/invite")
    await telegram.type(AGENT, "/help")
    assert telegram.chat(AGENT).texts[1] == agents.OWNER_ONLY
    assert "/invite" not in telegram.chat(AGENT).texts[2]

    await telegram.type(OWNER, "/agents")
    listing = telegram.chat(OWNER).from_bot[-1]
    assert f"User {AGENT}" in listing.text
    await telegram.press(OWNER, listing.message_id, listing.button_data(f"User {AGENT}"))
    assert telegram.chat(OWNER).callback_answers == [agents.REMOVED.format(name=f"User {AGENT}")]
    assert listing.text == agents.NO_AGENTS.format(shop="demo") and listing.buttons == []
    assert telegram.chat(AGENT).texts[-1] == agents.YOU_WERE_REMOVED.format(shop="demo")
    assert await links(res) == [(shop.shop_id, OWNER, "owner")]

    await telegram.type(AGENT, "/help")
    assert telegram.chat(AGENT).texts[-1] == fallback.NOT_LINKED


async def test_another_shops_agent_and_owner_get_nothing_of_this_shop(res, webhook, telegram):
    first, other = await new_shop(res, "first"), await new_shop(res, "other")
    other_owner, other_agent = 2001, 2002
    await telegram.type(OWNER, f"/start {first.code}")
    await telegram.type(OWNER, "/invite")
    first_code = re.search(r"/start (\w+)", telegram.chat(OWNER).texts[-1]).group(1)
    await telegram.type(AGENT, f"/start {first_code}")
    await telegram.type(other_owner, f"/start {other.code}")
    await telegram.type(other_owner, "/invite")
    other_code = re.search(r"/start (\w+)", telegram.chat(other_owner).texts[-1]).group(1)
    await telegram.type(other_agent, f"/start {other_code}")
    async with res.db.sessions() as session:
        first_agent = await session.scalar(select(BotLink.id).where(BotLink.chat_id == AGENT))
    forged = AgentAction(action=REMOVE, link_id=first_agent).pack()

    # The other shop's agent pressing a remove button of the first shop's agent.
    await telegram.type(other_agent, "/help")
    await telegram.press(other_agent, telegram.chat(other_agent).from_bot[-1].message_id, forged)
    assert telegram.chat(other_agent).callback_answers == [agents.OWNER_ONLY]
    # The other shop's owner: its shop has no such agent.
    await telegram.type(other_owner, "/agents")
    listing = telegram.chat(other_owner).from_bot[-1]
    assert f"User {other_agent}" in listing.text and f"User {AGENT}" not in listing.text
    await telegram.press(other_owner, listing.message_id, forged)
    assert telegram.chat(other_owner).callback_answers == [agents.GONE]
    # A code of the other shop does not move a linked chat.
    await telegram.type(other_owner, "/invite")
    another = re.search(r"/start (\w+)", telegram.chat(other_owner).texts[-1]).group(1)
    await telegram.type(AGENT, f"/start {another}")
    assert telegram.chat(AGENT).texts[-1] == link.EXPLAIN[link.Outcome.LINKED_ELSEWHERE].format(
        shop="first"
    )

    assert (first.shop_id, AGENT, "agent") in await links(res)
    assert not any("first" in text for text in telegram.chat(other_agent).texts)
    assert not any("first" in text for text in telegram.chat(other_owner).texts)
