"""Delivery of the alerts' pushes (`flows.alerts`) to Telegram: the DELIVER_JOB handler, and
the buttons a push carries (click-to-call, reply to a customer).

A push goes only to a chat still linked to its shop. Telegram's errors go through the job
system: a flood wait is retried after the time Telegram names, a server error with backoff,
a refused request not at all; a chat that blocked the bot (403) is marked, and its alerts
are skipped until it turns them on again.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy import select, update

from clock import Clock
from flows.alerts.decide import CALL, REPLY
from settings import TelegramSettings
from storage.db import Database
from storage.jobs import ClaimedJob, PermanentJobError, RetryLater
from storage.models import BotLink

_LOGGER = logging.getLogger(__name__)


class CallCustomer(CallbackData, prefix="call"):
    """Bridge the agent's phone and the customer of a callback request (its activity)."""

    activity_id: int


class ReplyToThread(CallbackData, prefix="reply"):
    """Answer the customer of a thread."""

    thread_id: int


def telegram_bot(settings: TelegramSettings) -> Bot:
    """A Bot for sending only (the worker's), pointed at `telegram.api_url`."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
    return Bot(settings.token.get_secret_value(), session=session)


def keyboard(action: dict[str, Any] | None) -> InlineKeyboardMarkup | None:
    """The push's button, if it has one."""
    if action is None:
        return None
    data: CallbackData
    if action["name"] == CALL:
        data = CallCustomer(activity_id=action["ref"])
    elif action["name"] == REPLY:
        data = ReplyToThread(thread_id=action["ref"])
    else:
        raise PermanentJobError(f"no button for {action['name']!r}")
    builder = InlineKeyboardBuilder()
    builder.button(text=action["label"], callback_data=data)
    return builder.as_markup()


class TelegramAlerts:
    """The DELIVER_JOB handler."""

    def __init__(self, bot: Bot, db: Database, clock: Clock) -> None:
        self.bot = bot
        self.db = db
        self.clock = clock

    async def handle(self, job: ClaimedJob) -> None:
        chat_id = int(job.payload["chat_id"])
        async with self.db.sessions() as session:
            linked = await session.scalar(
                select(BotLink.id).where(
                    BotLink.chat_id == chat_id, BotLink.shop_id == job.shop_id
                )
            )
        if linked is None:
            _LOGGER.info("alert job %s: chat %s is no longer linked to its shop", job.id, chat_id)
            return
        try:
            await self.bot.send_message(
                chat_id, job.payload["text"], reply_markup=keyboard(job.payload.get("action"))
            )
        except TelegramForbiddenError as exc:
            _LOGGER.info("chat %s blocked the bot (%s): its alerts are skipped", chat_id, exc)
            async with self.db.transaction() as session:
                await session.execute(
                    update(BotLink)
                    .where(BotLink.chat_id == chat_id)
                    .values(blocked_at=self.clock.now())
                )
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after, f"telegram flood wait: {exc}") from exc
        except TelegramBadRequest as exc:
            raise PermanentJobError(f"telegram refused the alert: {exc}") from exc
