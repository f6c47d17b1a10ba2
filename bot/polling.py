"""Polling Telegram for updates, by exactly one process of however many run.

Each process runs a `Poller`; only the one holding the database lease calls `getUpdates`
(Telegram allows one poll at a time, and answers an overlapping one 409). The holder renews
the lease after every update it handles, recording the next update to read, and lets it go
when it stops; when a holder dies, another takes over once the lease expires and resumes at
the recorded update. Becoming the poller removes any webhook (Telegram refuses polls while
one is set) and sets the bot's command menu.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import timedelta

from aiogram.exceptions import TelegramAPIError, TelegramConflictError
from aiogram.methods import GetUpdates

from bot.app import ALLOWED_UPDATES, MerchantBot
from clock import Clock
from storage import leases
from storage.db import Database

_LOGGER = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Telegram holds a poll open this long when nothing happens; well inside the lease.
POLL_SECONDS = 25
# How often a process without the lease asks for it, and the longest pause after an error.
RETRY_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Poller:
    def __init__(
        self,
        merchant_bot: MerchantBot,
        db: Database,
        clock: Clock,
        *,
        holder: str | None = None,
        lease: timedelta = LEASE,
        poll_seconds: int = POLL_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.merchant_bot = merchant_bot
        self.db = db
        self.clock = clock
        self.holder = holder or process_name()
        self.lease_name = f"telegram:{merchant_bot.bot.id}"
        self.lease = lease
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        # Set while this process is the poller; `refused` each time another one is.
        self.holding = asyncio.Event()
        self.refused = asyncio.Event()
        self._stop = asyncio.Event()
        self._poll: asyncio.Task[list] | None = None
        self._failures = 0

    def stop(self) -> None:
        """Stop polling (an open poll is abandoned) and let the lease go."""
        self._stop.set()
        if self._poll is not None:
            self._poll.cancel()

    async def run(self) -> None:
        """Poll while holding the lease, until `stop()`. A cancelled run (the process dying)
        keeps the lease until it expires, as a killed process would."""
        while not self._stop.is_set():
            try:
                position = await self._hold()
                if position is None:
                    await self._pause(self.retry_seconds)
                    continue
                await self._poll_once(position)
                self._failures = 0
            except asyncio.CancelledError:
                if not self._stop.is_set():
                    raise
            except TelegramConflictError as exc:
                _LOGGER.warning("telegram refused to be polled: %s", exc)
                self.holding.clear()  # set up again (deleteWebhook) on the next turn
                await self._backoff()
            except TelegramAPIError as exc:
                _LOGGER.warning("telegram poll failed: %s", exc)
                await self._backoff()
            except Exception:  # the database, most likely: polling resumes when it answers
                _LOGGER.exception("telegram polling failed")
                await self._backoff()
        if self.holding.is_set():
            await leases.release(self.db, self.lease_name, self.holder, self.clock.now())
            self.holding.clear()

    async def _hold(self, position: int | None = None) -> int | None:
        held = await leases.hold(
            self.db, self.lease_name, self.holder, self.clock.now(), self.lease, position
        )
        if held is None:
            if self.holding.is_set():
                _LOGGER.warning("telegram polling lease lost to another process")
            self.holding.clear()
            self.refused.set()
            return None
        if not self.holding.is_set():
            await self._become_poller()
        return held

    async def _become_poller(self) -> None:
        bot = self.merchant_bot
        await bot.bot.delete_webhook()
        await bot.announce()
        self.holding.set()
        _LOGGER.info("polling telegram for updates (this process holds the lease)")

    async def _poll_once(self, position: int) -> None:
        bot = self.merchant_bot.bot
        method = GetUpdates(
            offset=position or None, timeout=self.poll_seconds, allowed_updates=ALLOWED_UPDATES
        )
        self._poll = asyncio.ensure_future(bot(method, request_timeout=self.poll_seconds + 30))
        try:
            updates = await self._poll
        finally:
            self._poll = None
        for update in updates:
            await self.merchant_bot.handle(update)
            if await self._hold(update.update_id + 1) is None:
                return  # another process polls now, from this update on

    async def _backoff(self) -> None:
        self._failures += 1
        await self._pause(min(self.retry_seconds * 2 ** (self._failures - 1), MAX_BACKOFF_SECONDS))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
