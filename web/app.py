"""The aiohttp application factory: middlewares, typed keys and routes, nothing global."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from clock import Clock
from flows.channels.account_desk import AccountDesk
from flows.verification.customer_keys import CustomerKeys
from flows.verification.customer_page import CustomerDesk
from flows.verification.runtime import Verifier
from metrics import Metrics
from settings import Settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.inbox import Inbox
from storage.jobs import JobQueue
from storage.ratelimit import LocalRateLimiter, RedisRateLimiter
from web import (
    api,
    callbacks,
    health,
    otp_api,
    sandbox_api,
    sandbox_page,
    shipments,
    shopify,
    templates,
    twilio,
    verify_page,
)
from web.keys import (
    accounts_key,
    clock_key,
    customer_desk_key,
    db_key,
    http_key,
    inbox_key,
    metrics_key,
    queue_key,
    rate_limiter_key,
    redis_key,
    secret_box_key,
    settings_key,
)
from web.middlewares import errors, observe

if TYPE_CHECKING:
    from bot.app import MerchantBot


@dataclass(frozen=True)
class AppDeps:
    settings: Settings
    clock: Clock
    db: Database
    queue: JobQueue
    metrics: Metrics
    http: aiohttp.ClientSession
    # The provider-account use cases (connect, choose, setup list) for the admin API.
    accounts: AccountDesk
    redis: Any = None
    # Only in sandbox mode (`main.py sandbox`): adds the /sandbox routes.
    sandbox: sandbox_api.Sandbox | None = None
    # The merchant bot, when its updates come by webhook: adds POST /webhooks/telegram.
    merchant_bot: MerchantBot | None = None


def build_app(deps: AppDeps) -> web.Application:
    app = web.Application(
        client_max_size=deps.settings.server.max_body_bytes, middlewares=[observe, errors]
    )
    app[settings_key] = deps.settings
    app[clock_key] = deps.clock
    app[db_key] = deps.db
    app[queue_key] = deps.queue
    app[metrics_key] = deps.metrics
    app[http_key] = deps.http
    app[redis_key] = deps.redis
    app[accounts_key] = deps.accounts
    app[rate_limiter_key] = (
        RedisRateLimiter(deps.redis, deps.clock)
        if deps.redis is not None
        else LocalRateLimiter(deps.clock)
    )
    box = SecretBox(deps.settings.secret_keys())
    app[secret_box_key] = box
    app[inbox_key] = Inbox(deps.db, deps.queue, deps.clock)
    keys = CustomerKeys(deps.settings.secret_keys())
    verifier = Verifier(
        deps.db, deps.clock, deps.queue, box, keys, deps.settings.server.public_url
    )
    app[customer_desk_key] = CustomerDesk(deps.db, deps.clock, verifier, keys)
    app.cleanup_ctx.append(_run_inbox)
    health.setup_routes(app)
    shopify.setup_routes(app)
    twilio.setup_routes(app)
    callbacks.setup_routes(app)
    shipments.setup_routes(app)
    api.setup_routes(app)
    templates.setup(app)
    verify_page.setup_routes(app)
    otp_api.setup_routes(app)
    if deps.merchant_bot is not None:
        # Here, not at the top: aiogram takes seconds to import, paid only by a bot's process.
        from web import telegram

        telegram.setup_routes(app, deps.merchant_bot)
    if deps.sandbox is not None:
        sandbox_api.setup_routes(app, deps.sandbox)
        sandbox_page.setup_routes(app)
    return app


async def _run_inbox(app: web.Application) -> AsyncIterator[None]:
    await app[inbox_key].start()
    yield
    await app[inbox_key].stop()
