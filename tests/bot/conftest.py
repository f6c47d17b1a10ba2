"""The merchant bot's fixtures: the fake Telegram Bot API, settings pointing the real aiogram
Bot at it, the real app serving the webhook route, and shops with their link codes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.app import MerchantBot
from bot.fsm import FSM_PREFIX
from bot.webhook import WebhookRegistration
from clock import ManualClock
from flows.shops import onboarding
from main import Resources, open_resources
from providers.sandbox.telegram import TOKEN, FakeTelegram
from settings import Settings
from tests.conftest import SECURITY
from tests.web.test_messaging import free_port
from web.app import AppDeps, build_app


@pytest.fixture
async def telegram(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    # A bot id of its own: test runs sharing one Redis keep their FSM keys apart.
    bot_id = 10**9 + secrets.randbelow(9 * 10**9)
    fake = FakeTelegram(clock=clock, token=f"{bot_id}:{TOKEN.split(':')[1]}")
    await fake.start()
    yield fake
    await fake.close()


def fsm_keys(telegram: FakeTelegram) -> str:
    """The Redis key pattern of this test's bot conversations."""
    return f"{FSM_PREFIX}:{telegram.bot_id}:*"


async def clear_fsm(redis: Any, telegram: FakeTelegram) -> None:
    """Delete this test's bot conversations from Redis."""
    async for key in redis.scan_iter(fsm_keys(telegram)):
        await redis.delete(key)


@pytest.fixture
def port() -> int:
    return free_port()


def bot_settings(database_url: str, telegram: FakeTelegram, port: int, **extra: Any) -> Settings:
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        telegram={"token": telegram.token, "api_url": telegram.base_url, "webhook": True},
        **extra,
    )


@pytest.fixture
def settings(database_url: str, telegram: FakeTelegram, port: int) -> Settings:
    return bot_settings(database_url, telegram, port)


@pytest.fixture
async def res(settings: Settings, clock: ManualClock, db) -> AsyncIterator[Resources]:
    async with open_resources(settings, clock) as resources:
        yield resources


class Webhook:
    """The real app serving the bot's webhook route on `port`; `restart` replaces the bot
    and the app by new ones on the same database, as a restarted process would."""

    def __init__(self, aiohttp_server: Any, res: Resources, port: int) -> None:
        self.aiohttp_server = aiohttp_server
        self.res = res
        self.port = port
        self.bot: MerchantBot | None = None
        self.server: Any = None

    async def start(self) -> MerchantBot:
        res = self.res
        self.bot = MerchantBot(res.settings, res.db, res.clock, res.account_desk(), res.redis)
        app = build_app(
            AppDeps(
                res.settings,
                res.clock,
                res.db,
                res.queue,
                res.metrics,
                res.http,
                res.account_desk(),
                res.redis,
                merchant_bot=self.bot,
            )
        )
        self.server = await self.aiohttp_server(app, port=self.port)
        registration = WebhookRegistration(self.bot)
        await registration.run()
        assert registration.registered.is_set()
        return self.bot

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self.bot is not None:
            await self.bot.close()
        self.server = self.bot = None

    async def restart(self) -> MerchantBot:
        await self.stop()
        return await self.start()


@pytest.fixture
async def webhook(aiohttp_server: Any, res: Resources, port: int) -> AsyncIterator[Webhook]:
    served = Webhook(aiohttp_server, res, port)
    await served.start()
    yield served
    await served.stop()


@dataclass(frozen=True)
class NewShop:
    shop_id: int
    domain: str
    code: str


async def new_shop(res: Resources, name: str) -> NewShop:
    done = await onboarding.create_shop(
        res.db, res.queue, res.box, res.clock, f"{name}.myshopify.com", None
    )
    assert done.bot_link_code is not None
    return NewShop(done.shop_id, done.domain, done.bot_link_code)
