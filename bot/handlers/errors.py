"""An update whose handler raised: logged with what it was (never its text, which may carry
a secret), and the chat is answered politely instead of hearing nothing."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

_LOGGER = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on our side. Please try again in a moment."


def router() -> Router:
    router = Router(name="errors")
    router.errors.register(failed)
    return router


async def failed(event: ErrorEvent, bot: Bot) -> bool:
    update = event.update
    _LOGGER.error(
        "telegram update %s (%s) failed",
        update.update_id,
        update.event_type,
        exc_info=event.exception,
    )
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(SORRY, show_alert=True)
        elif update.message is not None:
            await bot.send_message(update.message.chat.id, SORRY)
    except TelegramAPIError as exc:
        _LOGGER.warning("could not tell chat of update %s: %s", update.update_id, exc)
    return True
