"""The fake Telegram Bot API answers the real aiogram client as Telegram does: each method the
merchant bot uses, long polling with offsets, and the conflicts Telegram reports."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError, TelegramUnauthorizedError
from aiogram.types import BotCommand, BufferedInputFile
from aiogram.utils.keyboard import InlineKeyboardBuilder

from providers.sandbox.telegram import FakeTelegram

CHAT = 4242


@pytest.fixture
async def bot(telegram: FakeTelegram):
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.base_url))
    client = Bot(telegram.token, session=session)
    yield client
    await client.session.close()


async def test_methods_record_what_the_chat_shows(telegram: FakeTelegram, bot: Bot):
    me = await bot.get_me()
    assert (me.id, me.username) == (telegram.bot_id, telegram.username)

    keyboard = InlineKeyboardBuilder()
    keyboard.button(text="Yes", callback_data="yes")
    sent = await bot.send_message(CHAT, "Ready?", reply_markup=keyboard.as_markup())
    chat = telegram.chat(CHAT)
    assert chat.texts == ["Ready?"]
    assert chat.from_bot[0].button_data("Yes") == "yes"

    await bot.edit_message_text("Ready now?", chat_id=CHAT, message_id=sent.message_id)
    assert chat.texts == ["Ready now?"] and chat.from_bot[0].buttons == []
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await bot.edit_message_text("Ready now?", chat_id=CHAT, message_id=sent.message_id)

    document = await bot.send_document(
        CHAT, BufferedInputFile(b"a,b\n1,2\n", "orders.csv"), caption="Orders"
    )
    assert document.document is not None and document.document.file_name == "orders.csv"
    photo = await bot.send_photo(CHAT, BufferedInputFile(b"\x89PNG...", "chart.png"))
    assert photo.photo
    assert chat.from_bot[1].document == b"a,b\n1,2\n" and chat.from_bot[2].photo == b"\x89PNG..."

    assert await bot.delete_message(CHAT, sent.message_id)
    assert chat.texts == ["Orders", ""]
    with pytest.raises(TelegramBadRequest):
        await bot.delete_message(CHAT, sent.message_id)

    assert await bot.set_my_commands([BotCommand(command="start", description="Link")])
    assert telegram.commands == [{"command": "start", "description": "Link"}]


async def test_a_wrong_token_is_unauthorized(telegram: FakeTelegram):
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.base_url))
    stranger = Bot("42:not-the-token", session=session)
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()


async def test_long_poll_offsets_and_callback_answers(telegram: FakeTelegram, bot: Bot):
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.wait_for(telegram.polling.wait(), 10)
    assert await telegram.type(CHAT, "/start ABC") == 0
    updates = await asyncio.wait_for(poll, 10)
    assert [u.message.text for u in updates if u.message] == ["/start ABC"]

    sent = await bot.send_message(CHAT, "Pick", reply_markup=_one_button("go"))
    await telegram.press(CHAT, sent.message_id, "go")
    # Not confirmed yet: the same update comes again until an offset passes it.
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id, updates[0].update_id + 1]
    latest = await bot.get_updates(offset=again[-1].update_id, timeout=0)
    query = latest[0].callback_query
    assert query is not None and query.data == "go"
    assert await bot.answer_callback_query(query.id, text="Done")
    assert telegram.chat(CHAT).callback_answers == ["Done"]
    assert await bot.get_updates(offset=latest[0].update_id + 1, timeout=0) == []
    assert telegram.pending == 0


async def test_an_overlapping_poll_ends_the_older_one_with_a_conflict(
    telegram: FakeTelegram, bot: Bot
):
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.wait_for(telegram.polling.wait(), 10)
    second = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 10)
    assert telegram.conflicts == 1
    await telegram.type(CHAT, "hello")
    assert len(await asyncio.wait_for(second, 10)) == 1


async def test_getupdates_is_refused_while_a_webhook_is_set(telegram: FakeTelegram, bot: Bot):
    await bot.set_webhook("http://127.0.0.1:9/webhooks/telegram", secret_token="s3cret")
    assert (telegram.webhook_url, telegram.webhook_secret) == (
        "http://127.0.0.1:9/webhooks/telegram",
        "s3cret",
    )
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == []


def _one_button(data: str):
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=data, callback_data=data)
    return keyboard.as_markup()
