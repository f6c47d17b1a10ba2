"""Polling: of two processes (two pollers in this test process, each with its own database
handle and Bot), exactly one polls; the other takes over at once when the first stops, or
once its lease expires when it dies, and resumes at the first update not handled. Failures
of Telegram or of a handler never stop the poller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.app import MerchantBot
from bot.handlers import errors, fallback
from bot.polling import LEASE, Poller
from settings import Settings
from storage.db import Database
from tests.bot.conftest import bot_settings

WAIT = 10  # seconds a test waits for the pollers (they act in milliseconds)
CHAT = 4001


@dataclass
class Process:
    """What one bot process has: its database handle, its bot and its poller."""

    db: Database
    bot: MerchantBot
    poller: Poller
    task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.poller.run())

    async def stop(self) -> None:
        self.poller.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, WAIT)

    async def kill(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
def settings(database_url, telegram, port) -> Settings:
    webhook = bot_settings(database_url, telegram, port)
    polling = webhook.telegram.model_copy(update={"webhook": False})
    return webhook.model_copy(update={"telegram": polling})


@pytest.fixture
async def processes(settings, clock, resources) -> AsyncIterator[list[Process]]:
    made: list[Process] = []

    def make(name: str) -> Process:
        db = Database(settings.database.url)
        bot = MerchantBot(settings, db, clock, resources.account_desk())
        poller = Poller(bot, db, clock, holder=name, poll_seconds=1, retry_seconds=0.01)
        made.append(Process(db, bot, poller))
        return made[-1]

    yield make
    for process in made:
        if process.task is not None and not process.task.done():
            await process.stop()
        await process.bot.close()
        await process.db.close()


async def wait(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT)


async def refused_again(process: Process) -> None:
    """Wait until `process` has asked for the lease, and been refused, once more."""
    process.poller.refused.clear()
    await wait(process.poller.refused)


async def test_two_processes_one_poller_then_a_clean_hand_over(processes, telegram):
    first, second = processes("first"), processes("second")
    first.start()
    await wait(first.poller.holding)
    second.start()
    await refused_again(second)

    for text in ("one", "two", "three"):
        await telegram.type(CHAT, text)
    assert await telegram.replies(CHAT, 3) == [fallback.NOT_LINKED] * 3
    await first.stop()
    await wait(second.poller.holding)
    await telegram.type(CHAT, "four")
    assert await telegram.replies(CHAT, 4) == [fallback.NOT_LINKED] * 4
    assert telegram.conflicts == 0
    assert len(telegram.called("deleteWebhook")) == 2  # once by each poller, as it began


async def test_a_dead_pollers_lease_expires_and_the_next_resumes_where_it_stopped(
    processes, telegram, clock
):
    first, second = processes("first"), processes("second")
    first.start()
    await wait(first.poller.holding)
    second.start()
    await telegram.type(CHAT, "before")
    assert await telegram.replies(CHAT, 1) == [fallback.NOT_LINKED]
    await first.kill()

    await telegram.type(CHAT, "while nobody polls")
    await refused_again(second)  # the dead process's lease holds until it expires
    assert not second.poller.holding.is_set()
    # "before" is not confirmed to Telegram yet (the next poll would have): it waits too.
    assert telegram.pending == 2 and len(telegram.chat(CHAT).from_bot) == 1
    clock.advance(LEASE)
    await wait(second.poller.holding)
    assert await telegram.replies(CHAT, 2) == [fallback.NOT_LINKED] * 2
    await telegram.type(CHAT, "after")
    # Each update handled once: nothing handled before the death came again.
    assert await telegram.replies(CHAT, 3) == [fallback.NOT_LINKED] * 3
    assert len(telegram.chat(CHAT).from_bot) == 3


async def test_failures_of_telegram_and_of_handlers_do_not_stop_the_poller(processes, telegram):
    only = processes("only")
    telegram.fail_next("getUpdates", 502, "Bad Gateway")
    telegram.fail_next("sendMessage", 500, "Internal Server Error")
    only.start()
    await telegram.type(CHAT, "hello")
    assert await telegram.replies(CHAT, 1) == [errors.SORRY]
    await telegram.type(CHAT, "hello again")
    assert await telegram.replies(CHAT, 2) == [errors.SORRY, fallback.NOT_LINKED]
    assert not only.task.done()


async def test_becoming_the_poller_removes_a_webhook_telegram_would_refuse_polls_for(
    processes, telegram
):
    only = processes("only")
    await only.bot.set_webhook()
    only.start()
    await wait(only.poller.holding)
    await telegram.type(CHAT, "hello")
    assert await telegram.replies(CHAT, 1) == [fallback.NOT_LINKED]
    assert telegram.webhook_url == ""
