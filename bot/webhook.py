"""Webhook mode's start: tell Telegram where to post updates (our public URL) and with which
secret token, and set the command menu; retried with a growing pause while Telegram cannot be
reached, so a process never fails to start for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram.exceptions import TelegramAPIError

from bot.app import MerchantBot

_LOGGER = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


class WebhookRegistration:
    def __init__(self, merchant_bot: MerchantBot, retry_seconds: float = FIRST_RETRY_SECONDS):
        self.merchant_bot = merchant_bot
        self.retry_seconds = retry_seconds
        self.registered = asyncio.Event()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        pause = self.retry_seconds
        while not self._stop.is_set():
            try:
                await self.merchant_bot.set_webhook()
                await self.merchant_bot.announce()
            except TelegramAPIError as exc:
                _LOGGER.warning("telegram webhook not set (retry in %.0f s): %s", pause, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                pause = min(pause * 2, MAX_RETRY_SECONDS)
                continue
            _LOGGER.info("telegram posts updates to %s", self.merchant_bot.webhook_url)
            self.registered.set()
            return
