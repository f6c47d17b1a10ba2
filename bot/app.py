"""The merchant bot: one aiogram Bot, pointed at `telegram.api_url` (Telegram, or a local fake
for tests and the sandbox), and its Dispatcher with the FSM storage, the chat's-shop
middleware and the routers.

Updates reach it either by webhook (`web.telegram` posts them to `handle_raw`, Telegram
checked by the secret token derived from the app's secret key) or by polling
(`bot.polling.Poller`, one process at a time).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand, Update
from pydantic import ValidationError
from redis.asyncio import Redis

from bot.fsm import fsm_storage
from bot.handlers import root_router
from bot.handlers.fallback import COMMANDS
from bot.handlers.threads import Replies
from bot.middlewares import ChatLinkMiddleware
from clock import Clock
from flows.alerts.desk import AlertDesk
from flows.channels.account_desk import AccountDesk
from flows.channels.routing import ProviderRouter
from flows.notifications.choices import WhatsAppNotices
from flows.orders.actions import MerchantOrders
from flows.orders.reports import ReportDesk
from flows.shops.bot_links import ChatLinks
from providers.shopify.admin import ShopifyAdmin
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database

_LOGGER = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
ALLOWED_UPDATES = ["message", "callback_query"]


class BadUpdate(ValueError):
    """A webhook body that is not a Telegram update; `field` names the first problem."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def webhook_secret(secret_key: str) -> str:
    """The token Telegram sends back in `X-Telegram-Bot-Api-Secret-Token` (a-z, 0-9)."""
    return hmac.new(secret_key.encode(), b"telegram-webhook", hashlib.sha256).hexdigest()


def router(settings: Settings, desk: AccountDesk) -> ProviderRouter:
    return ProviderRouter(settings, desk.box, desk.urls, desk.clients, desk.offers)


class MerchantBot:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        accounts: AccountDesk,
        redis: Redis | None = None,
    ) -> None:
        telegram = settings.telegram
        session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.api_url))
        self.bot = Bot(telegram.token.get_secret_value(), session=session)
        self.webhook = telegram.webhook
        self.webhook_url = f"{settings.server.public_url}{WEBHOOK_PATH}"
        self.secret_token = webhook_secret(settings.secret_key())
        storage, isolation = fsm_storage(db, clock, redis)
        links = ChatLinks(db, clock)
        # Shopify's client for the merchant's order actions, on a session of the bot's own.
        self.shopify_http = aiohttp.ClientSession()
        shopify = ShopifyAdmin(
            self.shopify_http, settings.shopify.admin_url, settings.shopify.api_version
        )
        # What handlers are given by name: the use cases they call.
        self.dispatcher = Dispatcher(
            storage=storage,
            events_isolation=isolation,
            links=links,
            accounts=accounts,
            report_desk=ReportDesk(db, clock),
            merchant_orders=MerchantOrders(db, clock, SecretBox(settings.secret_keys()), shopify),
            alert_desk=AlertDesk(db, clock, accounts.queue),
            replies=Replies(db, accounts.queue, clock),
            whatsapp_notices=WhatsAppNotices(db, accounts.box, clock, router(settings, accounts)),
        )
        self.dispatcher.update.outer_middleware(ChatLinkMiddleware(links))
        self.dispatcher.include_router(root_router())

    def secret_matches(self, token: str) -> bool:
        return secrets.compare_digest(token.encode(), self.secret_token.encode())

    async def announce(self) -> None:
        """Tell Telegram the commands to offer in the chat's menu."""
        await self.bot.set_my_commands(
            [BotCommand(command=name, description=text) for name, text in COMMANDS.items()]
        )

    async def set_webhook(self) -> None:
        """Have Telegram post updates to our webhook route, with our secret token."""
        await self.bot.set_webhook(
            self.webhook_url, secret_token=self.secret_token, allowed_updates=ALLOWED_UPDATES
        )

    async def handle_raw(self, payload: Any) -> None:
        """Handle one update as Telegram posted it; BadUpdate if it is not one."""
        try:
            update = Update.model_validate(payload, context={"bot": self.bot})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "body"
            raise BadUpdate(field, error["msg"]) from None
        await self.handle(update)

    async def handle(self, update: Update) -> None:
        """Handle one update. Never raises: a handler's failure is answered and logged by
        the errors router; this catches what even that could not handle."""
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except Exception:
            _LOGGER.exception("telegram update %s was not handled", update.update_id)

    async def close(self) -> None:
        await self.bot.session.close()
        await self.shopify_http.close()
