"""Answering a customer from the chat: a customer's message forwarded here (an alert) is
answered by replying to it in Telegram, or by its Reply button and then the text. The answer
goes back on the customer's channel through the same use case as `POST
/api/v1/threads/{id}/reply`, and only within the chat's own shop."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.alerts import ReplyToThread
from bot.filters import Linked
from clock import Clock
from flows.conversations import threads
from flows.shops.bot_links import ChatLink
from storage.db import Database
from storage.jobs import JobQueue


class ReplySteps(StatesGroup):
    text = State()


ASK_TEXT = "Send your answer to {phone} ({channel}); /cancel stops."
SENT = "Sent to {phone}."
TOO_LONG = "That is too long: an answer holds at most {limit} characters. Send a shorter one."
BLANK = "An answer needs some text. Send it again."
NO_THREAD = "That conversation is not one of your shop's (any more)."


class Replies:
    """What the chat's answers need: the database, the jobs queue and the clock."""

    def __init__(self, db: Database, queue: JobQueue, clock: Clock) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock


def router() -> Router:
    router = Router(name="threads")
    linked = Linked()
    router.callback_query.register(reply_pressed, ReplyToThread.filter(), linked)
    router.message.register(answer_typed, ReplySteps.text, F.text, ~F.text.startswith("/"), linked)
    router.message.register(answer_replied, F.text, replied_to_thread, linked)
    return router


async def reply_pressed(
    query: CallbackQuery,
    callback_data: ReplyToThread,
    bot: Bot,
    state: FSMContext,
    link: ChatLink,
    replies: Replies,
) -> None:
    view = await threads.thread(replies.db, link.shop_id, callback_data.thread_id)
    if view is None:
        await query.answer(NO_THREAD, show_alert=True)
        return
    await query.answer()
    await state.set_state(ReplySteps.text)
    await state.update_data(thread_id=view.thread.id)
    channel = view.thread.channel
    await bot.send_message(link.chat_id, ASK_TEXT.format(phone=view.thread.phone, channel=channel))


async def answer_typed(
    message: Message, state: FSMContext, link: ChatLink, replies: Replies
) -> None:
    thread_id = int((await state.get_data()).get("thread_id") or 0)
    if await _answer(message, link, replies, thread_id):
        await state.clear()


async def answer_replied(
    message: Message, thread_id: int, link: ChatLink, replies: Replies
) -> None:
    await _answer(message, link, replies, thread_id)


async def replied_to_thread(message: Message, bot: Bot) -> dict[str, int] | bool:
    """Filter: a Telegram reply to a forwarded customer message, whose Reply button names
    its thread (given to the handler as `thread_id`)."""
    original = message.reply_to_message
    if original is None or original.from_user is None or original.from_user.id != bot.id:
        return False
    markup = original.reply_markup
    for row in markup.inline_keyboard if markup is not None else []:
        for button in row:
            try:
                data = ReplyToThread.unpack(button.callback_data or "")
            except (TypeError, ValueError):
                continue
            return {"thread_id": data.thread_id}
    return False


async def _answer(message: Message, link: ChatLink, replies: Replies, thread_id: int) -> bool:
    """Send the answer; False when the chat must send it again."""
    text = message.text or ""
    if not text.strip():
        await message.answer(BLANK)
        return False
    if len(text) > threads.MAX_REPLY:
        await message.answer(TOO_LONG.format(limit=threads.MAX_REPLY))
        return False
    now = replies.clock.now()
    sent = await threads.reply(replies.db, replies.queue, now, link.shop_id, thread_id, text)
    if sent is None:
        await message.answer(NO_THREAD)
        return True
    await message.answer(SENT.format(phone=sent.to_phone))
    return True
