"""ordertalk's composition root and command line.

    python main.py serve [--config PATH]     web + job worker + merchant bot in one process
    python main.py sandbox [--config PATH] [--port N]
                                             the whole product with simulated outside parties
    python main.py worker [--config PATH]    job workers only
    python main.py bot [--config PATH]       the merchant's Telegram bot only (polling)
    python main.py migrate [--config PATH]   apply (or roll back) schema migrations
    python main.py check-config [--config PATH]
    python main.py shop add --domain X.myshopify.com [--token TOKEN [--api-secret SECRET]]
    python main.py shop list | status | setup | rotate-key [--domain X.myshopify.com]

This is the only module that knows every concrete class. An invalid configuration exits
with status 2 and one line per problem naming the key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url

from clock import Clock, OffsetClock, SystemClock
from flows.alerts.desk import Bridger
from flows.alerts.scan import CALL_JOB as ALERT_CALL_JOB
from flows.alerts.scan import DELIVER_JOB, SCAN_JOB, AlertScanner, first_scan
from flows.channels.account_desk import AccountDesk
from flows.channels.accounts import CHECK_JOB, AccountChecker, PlatformOffer
from flows.channels.callback_urls import CallbackUrls
from flows.channels.messaging import SEND_JOB, MessageSender, Owners
from flows.channels.provider_events import EVENT_JOB, ProviderEvents
from flows.channels.ringcentral_subscription import SUBSCRIPTION_JOB, SubscriptionKeeper, check_now
from flows.channels.routing import ProviderRouter, platform_offers
from flows.conversations.shopify_consent import SYNC_JOB, ConsentSync
from flows.notifications.job import NOTIFY_JOB, Notifier
from flows.notifications.merchant import MERCHANT_JOB, MerchantTexts
from flows.notifications.shipments import shipments_url
from flows.notifications.template_recheck import (
    RECHECK_JOB,
    TemplateRecheck,
    recheck_job,
    shops_to_recheck,
)
from flows.notifications.whatsapp import TemplateChecks
from flows.orders.actions import CANCEL_JOB, TAGS_JOB, OrderActions
from flows.shops import onboarding, sandbox
from flows.shops.reconcile import RECONCILE_JOB, Reconciler, next_reconcile
from flows.shops.shopify_events import WEBHOOK_JOB, ShopifyEvents
from flows.verification.calls import CallPlacer
from flows.verification.customer_keys import CustomerKeys
from flows.verification.runtime import CALL_JOB, TIMER_JOB, VERIFY_ORDER_JOB, Verifier
from logs import setup_logging
from metrics import Metrics
from providers.exotel import ExotelClient
from providers.gupshup import GupshupClient
from providers.ringcentral import RingCentralClient
from providers.sandbox.world import AppLinks, SandboxWorld
from providers.shopify.admin import ShopifyAdmin
from providers.shopify.oauth import valid_shop_domain
from providers.twilio import TwilioClient
from settings import (
    ConfigError,
    DatabaseSettings,
    ExotelSettings,
    GupshupSettings,
    ProvidersSettings,
    RedisSettings,
    SandboxSettings,
    SecuritySettings,
    Settings,
    ShopifySettings,
    TelegramSettings,
    TwilioSettings,
    load_settings,
    masked,
    require_sandbox_allowed,
)
from storage import migrate
from storage.crypto import SecretBox
from storage.db import JOBS_CHANNEL, Database
from storage.jobs import PRUNE_JOB, BatchHandler, Handler, JobQueue, Retention, Worker, prune_job
from storage.models import Shop
from storage.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from storage.wakeup import PostgresWakeup, RedisWakeup, Wakeup
from web.app import AppDeps, build_app
from web.sandbox_api import Sandbox

if TYPE_CHECKING:
    from aiogram import Bot

    from bot.app import MerchantBot

_LOGGER = logging.getLogger("ordertalk")


@dataclass
class Resources:
    settings: Settings
    clock: Clock
    db: Database
    queue: JobQueue
    metrics: Metrics
    redis: Redis | None
    http: aiohttp.ClientSession
    box: SecretBox
    shopify: ShopifyAdmin
    clients: ProviderClients
    limiter: RateLimiter
    # The worker's Telegram bot, which delivers alerts (None without a token).
    telegram: Bot | None = None

    @functools.cached_property
    def keys(self) -> CustomerKeys:
        return CustomerKeys(self.settings.secret_keys())

    def router(self) -> ProviderRouter:
        urls = callback_urls(self.settings)
        return ProviderRouter(self.settings, self.box, urls, self.clients, self.clients.offers())

    def account_desk(self) -> AccountDesk:
        return account_desk(self.settings, self.db, self.queue, self.clock, self.clients)

    def verifier(self) -> Verifier:
        return Verifier(
            self.db, self.clock, self.queue, self.box, self.keys, self.settings.server.public_url
        )

    def notifier(self) -> Notifier:
        return Notifier(self.db, self.clock, self.queue, TemplateChecks(self.router(), self.clock))

    def message_owner(self) -> Owners:
        """The conversations told about their messages (the send job and provider statuses)."""
        return Owners((self.verifier(), self.notifier()))


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings, clock: Clock, *, listen: bool = True
) -> AsyncIterator[Resources]:
    """Everything a command needs. `listen`: this process runs jobs, so it listens for work
    other processes enqueue (a process that only enqueues still announces it)."""
    redis = Redis.from_url(settings.redis.url) if settings.redis.url else None
    url = make_url(settings.database.url)
    wakeup: Wakeup
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        wakeup = PostgresWakeup(dsn, JOBS_CHANNEL)
    elif redis is not None:
        wakeup = RedisWakeup(redis, JOBS_CHANNEL)
    else:
        wakeup = Wakeup()
    db = Database(settings.database.url, wakeup)
    http = aiohttp.ClientSession()
    shopify = ShopifyAdmin(http, settings.shopify.admin_url, settings.shopify.api_version)
    clients = ProviderClients(settings, http, clock)
    limiter = RedisRateLimiter(redis, clock) if redis is not None else LocalRateLimiter(clock)
    telegram = None
    if settings.telegram.token.get_secret_value():
        from bot.alerts import telegram_bot

        telegram = telegram_bot(settings.telegram)
    try:
        if listen:
            await wakeup.start()
        yield Resources(
            settings,
            clock,
            db,
            JobQueue(db, clock, settings.jobs),
            Metrics(),
            redis,
            http,
            SecretBox(settings.secret_keys()),
            shopify,
            clients,
            limiter,
            telegram,
        )
    finally:
        if telegram is not None:
            await telegram.session.close()
        await clients.aclose()
        await http.close()
        await wakeup.stop()
        await db.close()
        if redis is not None:
            await redis.aclose()


PROVIDER_NAMES = ("twilio", "exotel", "gupshup", "ringcentral")


@dataclass(frozen=True)
class PlatformClients:
    """The platform's configured provider clients (None when not configured)."""

    twilio: Any = None
    exotel: Any = None
    gupshup: Any = None
    ringcentral: Any = None


def platform_clients(
    settings: Settings, http: aiohttp.ClientSession, clock: Clock
) -> PlatformClients:
    """The platform's provider accounts that are configured."""
    p = settings.providers
    secret = SecretStr.get_secret_value
    return PlatformClients(
        twilio=TwilioClient(
            p.twilio.account_sid,
            secret(p.twilio.auth_token),
            p.twilio.api_url,
            whatsapp_from=p.twilio.whatsapp_from,
            status_callback=f"{settings.server.public_url}/webhooks/twilio/status",
        )
        if p.twilio.account_sid and secret(p.twilio.auth_token)
        else None,
        exotel=ExotelClient(
            http,
            account_sid=p.exotel.account_sid,
            api_key=p.exotel.api_key,
            api_token=secret(p.exotel.api_token),
            subdomain=p.exotel.subdomain,
            api_url=p.exotel.api_url,
        )
        if p.exotel.account_sid and p.exotel.api_key and secret(p.exotel.api_token)
        else None,
        gupshup=GupshupClient(
            http,
            api_key=secret(p.gupshup.api_key),
            app_name=p.gupshup.app_name,
            source=p.gupshup.source,
            api_url=p.gupshup.api_url,
        )
        if secret(p.gupshup.api_key) and p.gupshup.app_name and p.gupshup.source
        else None,
        ringcentral=RingCentralClient(
            http,
            clock,
            client_id=p.ringcentral.client_id,
            client_secret=secret(p.ringcentral.client_secret),
            jwt=secret(p.ringcentral.jwt),
            api_url=p.ringcentral.api_url,
        )
        if p.ringcentral.client_id and secret(p.ringcentral.jwt)
        else None,
    )


class ProviderClients:
    """Builds the clients of shops' own accounts (one per account, kept while its details
    stay the same) and hands out the platform's configured ones."""

    def __init__(self, settings: Settings, http: aiohttp.ClientSession, clock: Clock) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self.configured = platform_clients(settings, http, clock)
        self._built: dict[str, Any] = {}

    def platform(self, provider: str) -> Any:
        return getattr(self.configured, provider)

    def for_account(self, provider: str, details: dict[str, Any], secrets: dict[str, Any]) -> Any:
        key = json.dumps([provider, details, secrets], sort_keys=True)
        client = self._built.get(key)
        if client is None:
            client = self._built[key] = self._build(provider, details, secrets)
        return client

    def _build(self, provider: str, details: dict[str, Any], secrets: dict[str, Any]) -> Any:
        p = self.settings.providers
        if provider == "twilio":
            return TwilioClient(
                details["account_sid"],
                secrets["auth_token"],
                p.twilio.api_url,
                whatsapp_from=details.get("whatsapp_number", ""),
                status_callback=f"{self.settings.server.public_url}/webhooks/twilio/status",
            )
        if provider == "exotel":
            return ExotelClient(
                self.http,
                account_sid=details["account_sid"],
                api_key=details["api_key"],
                api_token=secrets["api_token"],
                subdomain=details.get("subdomain", "api.exotel.com"),
                api_url=p.exotel.api_url,
            )
        if provider == "gupshup":
            return GupshupClient(
                self.http,
                api_key=secrets["api_key"],
                app_name=details["app_name"],
                source=details["whatsapp_number"],
                api_url=p.gupshup.api_url,
            )
        return RingCentralClient(
            self.http,
            self.clock,
            client_id=details["client_id"],
            client_secret=secrets["client_secret"],
            jwt=secrets["jwt"],
            api_url=p.ringcentral.api_url,
        )

    def offers(self) -> dict[str, PlatformOffer]:
        configured = {
            name for name in PROVIDER_NAMES if getattr(self.configured, name) is not None
        }
        return platform_offers(self.settings, configured)

    async def aclose(self) -> None:
        for client in [*self._built.values(), self.configured.twilio]:
            if isinstance(client, TwilioClient):
                await client.aclose()


def callback_urls(settings: Settings) -> CallbackUrls:
    return CallbackUrls(settings.server.public_url, settings.secret_keys())


def account_desk(
    settings: Settings, db: Database, queue: JobQueue, clock: Clock, clients: ProviderClients
) -> AccountDesk:
    box = SecretBox(settings.secret_keys())
    return AccountDesk(db, queue, box, clock, clients, clients.offers(), callback_urls(settings))


def job_handlers(res: Resources) -> Mapping[str, Handler]:
    """Every job kind the product knows, bound to its dependencies, but the floods run a
    batch at a time (`make_worker`)."""
    webhook_url = f"{res.settings.server.public_url}/webhooks/shopify"
    order_actions = OrderActions(res.db, res.clock, res.box, res.shopify)
    router = res.router()
    desk = res.account_desk()
    verifier = res.verifier()
    handlers: dict[str, Handler] = {
        onboarding.CONNECT_JOB: onboarding.ShopConnector(
            res.db, res.queue, res.box, res.clock, res.shopify, webhook_url
        ).handle,
        RECONCILE_JOB: Reconciler(res.db, res.queue, res.box, res.clock, res.shopify).handle,
        EVENT_JOB: ProviderEvents(
            res.db, res.clock, verifier, res.queue, res.message_owner()
        ).handle,
        MERCHANT_JOB: MerchantTexts(res.db, res.clock, res.queue).handle,
        RECHECK_JOB: TemplateRecheck(res.db, res.clock, res.queue, router).handle,
        TAGS_JOB: order_actions.handle_tags,
        CANCEL_JOB: order_actions.handle_cancel,
        SYNC_JOB: ConsentSync(res.db, res.clock, res.box, res.shopify).handle,
        TIMER_JOB: verifier.handle_timer,
        CHECK_JOB: AccountChecker(
            res.db, res.queue, res.box, res.clients, res.clock, desk.refresh
        ).handle,
        PRUNE_JOB: Retention(res.queue).handle,
        SUBSCRIPTION_JOB: SubscriptionKeeper(
            res.db,
            res.queue,
            res.clock,
            res.clients,
            res.box,
            callback_urls(res.settings),
            res.settings.secret_key(),
        ).handle,
    }
    if res.telegram is not None:  # alerts need a bot to deliver them
        from bot.alerts import TelegramAlerts

        handlers[SCAN_JOB] = AlertScanner(res.db, res.clock, res.queue).handle
        handlers[DELIVER_JOB] = TelegramAlerts(res.telegram, res.db, res.clock).handle
        handlers[ALERT_CALL_JOB] = Bridger(
            res.db, res.clock, res.queue, router, desk.rejected
        ).handle
    return handlers


async def schedule_periodic(res: Resources) -> None:
    """At start: every connected shop's reconciliation, the pruning of dead jobs, the
    WhatsApp template re-check of shops with their own Gupshup account, the scan for merchant
    alerts (with a bot) and the RingCentral subscription check (each once per interval,
    however many processes start)."""
    async with res.db.transaction() as session:
        shop_ids = await session.scalars(select(Shop.id).where(Shop.status != "uninstalled"))
        now = res.clock.now()
        await res.queue.enqueue(session, *(next_reconcile(i, now) for i in shop_ids))
        await res.queue.enqueue(session, prune_job(now, next_slot=False))
        rechecked = await shops_to_recheck(session)
        await res.queue.enqueue(
            session, *(recheck_job(i, now, next_slot=False) for i in rechecked)
        )
        if res.telegram is not None:
            await res.queue.enqueue(session, first_scan(now))
        if res.clients.configured.ringcentral is not None:
            await res.queue.enqueue(session, check_now(now))


def contact_handlers(res: Resources) -> dict[str, BatchHandler]:
    """The call and send jobs: a sale day's flood of first contacts, a batch at a time."""
    router = res.router()
    desk = res.account_desk()
    sender = MessageSender(
        res.db,
        res.clock,
        res.limiter,
        router,
        res.keys,
        desk.rejected,
        owner=res.message_owner(),
        metrics=res.metrics,
    )
    placer = CallPlacer(
        res.db, res.clock, res.limiter, router, res.verifier(), desk.rejected, metrics=res.metrics
    )
    return {SEND_JOB: sender.handle_batch, CALL_JOB: placer.handle_batch}


# A burst's later stages go first: the customer's first contact, then the verification starts
# of reconciled orders (a webhook's start in its own batch), ahead of the webhooks still
# waiting to become orders (every other kind: lane 0).
JOB_LANES = {CALL_JOB: 2, SEND_JOB: 2, VERIFY_ORDER_JOB: 1}


def make_worker(resources: Resources) -> Worker:
    verifier = resources.verifier()
    return Worker(
        resources.queue,
        job_handlers(resources),
        clock=resources.clock,
        settings=resources.settings.jobs,
        wakeup=resources.db.wakeup,
        metrics=resources.metrics,
        # Shopify events come in floods: their orders are written, and their verifications
        # started, a batch at a time (those of reconciled orders by VERIFY_ORDER_JOB).
        batch_handlers={
            WEBHOOK_JOB: ShopifyEvents(
                resources.db, resources.clock, resources.queue, verifier
            ).handle_batch,
            VERIFY_ORDER_JOB: verifier.handle_orders,
            # ...and the journey notifications of a day's fulfilments.
            NOTIFY_JOB: resources.notifier().handle_batch,
            **contact_handlers(resources),
        },
        # Floods give way to the webhook intake while it works (storage.jobs.pace): Shopify's
        # events, the verifications and notifications they start, and customers' messages (a
        # STOP among them is in force from its acceptance). Not the contacts: their pace is
        # the provider's rate, and a slot left unused while they wait is not made up later.
        paced=(WEBHOOK_JOB, VERIFY_ORDER_JOB, NOTIFY_JOB, EVENT_JOB),
        lanes=JOB_LANES,
    )


def keep_startup_out_of_gc() -> None:
    """What start-up built (modules, app, pools, caches) lives as long as the process: keep
    it out of the collector's full passes, which otherwise walk all of it (~100 ms measured
    under load, a pause of every request in flight)."""
    gc.collect()
    gc.freeze()


class StartupError(Exception):
    """The process cannot start; the message says why and what to do."""


async def ensure_schema(db: Database, *, migrate_any: bool = False) -> None:
    """SQLite files (and, with `migrate_any`, any database) are migrated on start;
    PostgreSQL must otherwise be migrated explicitly."""
    try:
        if db.dialect == "sqlite" or migrate_any:
            await migrate.upgrade(db)
            return
        current = await migrate.current_revision(db)
    except Exception as exc:
        raise StartupError(f"database: cannot open {_safe(db.url)}: {exc}") from exc
    if current != migrate.head_revision():
        raise StartupError(
            f"database: schema is at {current or 'nothing'}, this release needs "
            f"{migrate.head_revision()}; run `python main.py migrate` first"
        )


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


class Service(Protocol):
    """Work that runs beside the web server until stopped (the bot's poller or webhook)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


# The bot's modules are imported where a bot is made: aiogram takes seconds to import, and
# only the processes that run the bot should pay for it.


def merchant_bot(res: Resources) -> MerchantBot | None:
    """The merchant's Telegram bot, or None (said in the log) when no token is configured."""
    if not res.settings.telegram.token.get_secret_value():
        _LOGGER.info("telegram.token is not set: the merchant bot is off")
        return None
    from bot.app import MerchantBot

    return MerchantBot(res.settings, res.db, res.clock, res.account_desk(), res.redis)


def bot_service(res: Resources, bot: MerchantBot) -> Service:
    """Webhook mode: register the webhook; polling: poll when this process holds the lease."""
    from bot.polling import Poller
    from bot.webhook import WebhookRegistration

    return WebhookRegistration(bot) if bot.webhook else Poller(bot, res.db, res.clock)


async def serve_app(
    res: Resources,
    app: web.Application,
    site: Callable[[web.AppRunner], web.BaseSite],
    started: Callable[[web.AppRunner], None],
    services: tuple[Service, ...] = (),
) -> None:
    """Serve `app`, run the worker (unless jobs run elsewhere) and `services`, until SIGTERM
    or SIGINT."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await site(runner).start()
    worker = make_worker(res)
    run = worker.run() if res.settings.jobs.run_in_serve else asyncio.sleep(0)
    worker_task = asyncio.create_task(run, name="worker")
    service_tasks = [asyncio.create_task(service.run()) for service in services]
    keep_startup_out_of_gc()
    started(runner)
    try:
        await _until_signalled()
    finally:
        for service in services:
            service.stop()
        worker.stop()
        await asyncio.gather(worker_task, *service_tasks)
        await runner.cleanup()


async def serve(settings: Settings) -> None:
    async with open_resources(settings, SystemClock(), listen=settings.jobs.run_in_serve) as res:
        await ensure_schema(res.db)
        await schedule_periodic(res)
        bot = merchant_bot(res)
        app = build_app(
            AppDeps(
                settings,
                res.clock,
                res.db,
                res.queue,
                res.metrics,
                res.http,
                res.account_desk(),
                res.redis,
                merchant_bot=bot if bot is not None and bot.webhook else None,
            )
        )

        def started(runner: web.AppRunner) -> None:
            host, port = runner.addresses[0][:2]
            print(f"ordertalk serving on http://{host}:{port}", flush=True)

        try:
            await serve_app(
                res,
                app,
                lambda runner: web.TCPSite(runner, settings.server.host, settings.server.port),
                started,
                (bot_service(res, bot),) if bot is not None else (),
            )
        finally:
            if bot is not None:
                await bot.close()


async def run_bot(settings: Settings) -> None:
    """`main.py bot`: the merchant bot alone, polling (when this process holds the lease)."""
    if settings.telegram.webhook:
        raise StartupError(
            "telegram.webhook: true: updates arrive at `serve`'s POST /webhooks/telegram; "
            "`main.py bot` runs the bot by polling (set telegram.webhook = false)"
        )
    if not settings.telegram.token.get_secret_value():
        raise StartupError("telegram.token: not set; there is no bot to run")
    async with open_resources(settings, SystemClock(), listen=False) as res:
        await ensure_schema(res.db)
        bot = merchant_bot(res)
        assert bot is not None  # the token is set
        poller = bot_service(res, bot)
        task = asyncio.create_task(poller.run(), name="bot")
        keep_startup_out_of_gc()
        print("ordertalk bot ready", flush=True)
        try:
            await _until_signalled()
        finally:
            poller.stop()
            await task
            await bot.close()


SANDBOX_DATABASE = "sqlite+aiosqlite:///sandbox.db"
# Public, so it keys nothing but the sandbox's simulated data, and only when no key is set.
SANDBOX_SECRET_KEY = "ordertalk-sandbox-only-secret-key-do-not-use-in-production"


def sandbox_settings(settings: Settings, world: SandboxWorld, public_url: str) -> Settings:
    """`settings` with every outside party replaced by the world's fakes: Shopify, the
    shop's Exotel and Twilio (their API URLs only: their accounts are the shop's), the
    platform's Gupshup and Telegram's Bot API (the merchant bot, by webhook); no platform
    Twilio, no RingCentral or Redis. The database is `sandbox.db` and the key the sandbox's
    unless they are configured."""
    database = settings.database
    if "url" not in database.model_fields_set:
        database = DatabaseSettings(url=SANDBOX_DATABASE)
    security = settings.security
    if not security.secret_key.get_secret_value():
        security = SecuritySettings(
            secret_key=SecretStr(SANDBOX_SECRET_KEY), admin_token=security.admin_token
        )
    gupshup = world.gupshup
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"public_url": public_url}),
            "database": database,
            "security": security,
            "redis": RedisSettings(),
            "shopify": ShopifySettings(
                api_key=world.shopify.api_key,
                api_secret=SecretStr(world.shopify.api_secret),
                api_version=settings.shopify.api_version,
                admin_url=world.shopify.admin_url_template,
            ),
            "telegram": TelegramSettings(
                token=SecretStr(world.telegram.token),
                api_url=world.telegram.base_url,
                webhook=True,
            ),
            "sandbox": SandboxSettings(enabled=True),
            "jobs": settings.jobs.model_copy(update={"run_in_serve": True}),
            "providers": ProvidersSettings(
                exotel=ExotelSettings(api_url=world.exotel.base_url),
                twilio=TwilioSettings(api_url=world.twilio.base_url),
                gupshup=GupshupSettings(
                    api_key=SecretStr(gupshup.api_key),
                    app_name=gupshup.app_name,
                    source=gupshup.source,
                    api_url=gupshup.base_url,
                ),
            ),
        }
    )


async def open_sandbox(res: Resources, world: SandboxWorld, clock: OffsetClock) -> Sandbox:
    """Migrate, seed the demo shop and connect the world to the app (its public URL)."""
    await ensure_schema(res.db, migrate_any=True)
    latest = await sandbox.latest_moment(res.db)
    if latest is not None:
        clock.advance_to(latest)  # a restarted sandbox does not go back in time
    exotel, twilio = world.exotel, world.twilio
    shop = await sandbox.seed_demo_shop(
        res.db,
        res.queue,
        res.box,
        clock,
        res.account_desk(),
        sandbox.demo_settings(),
        sandbox.demo_accounts(
            exotel_sid=exotel.account_sid,
            exotel_key=exotel.api_key,
            exotel_token=exotel.api_token,
            twilio_sid=twilio.account_sid,
            twilio_token=twilio.auth_token,
        ),
    )
    world.shop.continue_numbering(await sandbox.last_order_number(res.db, shop.shop_id))
    public_url = res.settings.server.public_url
    urls = CallbackUrls(public_url, res.settings.secret_keys())
    world.connect(
        AppLinks(
            shopify_webhooks=f"{public_url}/webhooks/shopify",
            exotel_passthru=urls.exotel(shop.shop_id, "passthru"),
            exotel_sms=urls.exotel(shop.shop_id, "sms"),
            gupshup=urls.gupshup(),
            twilio_messages=urls.twilio("messages"),
            shipments=shipments_url(public_url, res.settings.secret_key(), shop.shop_id),
        )
    )
    return Sandbox(world, clock, shop)


def sandbox_app(res: Resources, simulation: Sandbox, bot: MerchantBot) -> web.Application:
    """The real app with the sandbox's routes and the bot's webhook route."""
    deps = AppDeps(
        res.settings,
        res.clock,
        res.db,
        res.queue,
        res.metrics,
        res.http,
        res.account_desk(),
        res.redis,
        simulation,
        merchant_bot=bot,
    )
    return build_app(deps)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise StartupError(f"server: cannot listen on {host}:{port}: {exc}") from exc


def _public_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def run_sandbox(settings: Settings, port: int | None) -> None:
    """`main.py sandbox`: the real app, worker and pages, with a simulated outside world."""
    clock = OffsetClock()
    world = SandboxWorld(clock)
    # Bound first: the app's public URL (in every callback) is this socket's address.
    sock = _listen(settings.server.host, settings.server.port if port is None else port)
    try:
        await world.start()
        settings = sandbox_settings(settings, world, _public_url(sock))
        async with open_resources(settings, clock) as res:
            simulation = await open_sandbox(res, world, clock)
            await schedule_periodic(res)
            bot = merchant_bot(res)
            assert bot is not None  # the sandbox's settings give it the world's token
            page = f"{settings.server.public_url}/sandbox"
            try:
                await serve_app(
                    res,
                    sandbox_app(res, simulation, bot),
                    lambda runner: web.SockSite(runner, sock),
                    lambda _runner: print(f"ordertalk sandbox on {page}", flush=True),
                    (bot_service(res, bot),),
                )
            finally:
                await bot.close()
    finally:
        await world.stop()
        sock.close()


async def run_workers(settings: Settings) -> None:
    async with open_resources(settings, SystemClock()) as res:
        await ensure_schema(res.db)
        await schedule_periodic(res)
        worker = make_worker(res)
        task = asyncio.create_task(worker.run(), name="worker")
        keep_startup_out_of_gc()
        print(f"ordertalk worker {worker.id} ready", flush=True)
        try:
            await _until_signalled()
        finally:
            worker.stop()
            await task


async def run_migrate(settings: Settings, downgrade_to: str | None) -> None:
    db = Database(settings.database.url)
    try:
        if downgrade_to:
            await migrate.downgrade(db, downgrade_to)
        else:
            await migrate.upgrade(db)
        print(f"database {_safe(db.url)} at revision {await migrate.current_revision(db)}")
    except Exception as exc:
        raise StartupError(f"database: migration failed on {_safe(db.url)}: {exc}") from exc
    finally:
        await db.close()


async def shop_command(settings: Settings, args: argparse.Namespace) -> None:
    """`main.py shop ACTION`: a shop's life from the command line."""
    async with open_resources(settings, SystemClock()) as res:
        await ensure_schema(res.db)
        action = args.shop_command
        if action == "add":
            await add_shop(res, args.domain, args.token, args.api_secret)
        elif action == "list":
            for row in await onboarding.list_shops(res.db):
                print(f"{row.shop_id}\t{row.domain}\t{row.status}\t{row.name}")
        elif action == "rotate-key":
            api_key = await onboarding.rotate_key(res.db, res.clock, args.domain)
            print(f"new API key for {args.domain} (shown once; the old one no longer works):")
            print(api_key)
        else:
            shop_id = await onboarding.find_shop(res.db, args.domain)
            setup = await res.account_desk().setup(shop_id)
            print(setup_text(args.domain, setup, with_paste=action == "setup"))
            signing = await onboarding.webhook_signing_of(res.db, res.box, args.domain)
            print(f"  {onboarding.SIGNING_MESSAGES[signing]}")


async def add_shop(res: Resources, domain: str, token: str | None, api_secret: str | None) -> None:
    args = (res.db, res.queue, res.box, res.clock, domain)
    if token:
        access = onboarding.ShopifyAccess(token, app_secret=api_secret or "")
        done = await onboarding.connect_with_token(*args, access)
    else:
        done = await onboarding.create_shop(*args, None)
    print(f"shop {done.domain} (id {done.shop_id}): {done.status}")
    if done.api_key:
        print(f"API key (shown once): {done.api_key}")
        print(f"bot link code (24 h): {done.bot_link_code}")
    if token:
        print("the worker (serve or worker) now registers webhooks and reads the shop's details")
        print(onboarding.SIGNING_MESSAGES[done.webhooks])


def setup_text(domain: str, setup: dict[str, Any], *, with_paste: bool) -> str:
    """The setup list as the operator reads it in a terminal."""
    lines = [f"shop {domain}: {setup['status']}"]
    for channel, chosen in setup["channels"].items():
        carrier = f"{chosen['owner']} {chosen['provider']} account" if chosen else "no account"
        lines.append(f"  {channel}: {carrier}")
    if with_paste:
        for account in setup["accounts"]:
            health = ": ".join(filter(None, (account["status"], account["status_reason"])))
            lines.append(
                f"{account['owner']} {account['provider']} account {account['id']} ({health})"
            )
            lines += [f"  {item['where']}:\n    {item['value']}" for item in account["paste"]]
        lines.append("the shop")
        lines += [f"  {item['where']}:\n    {item['value']}" for item in setup["paste"]]
    if setup["missing"]:
        lines.append("missing for installed:")
        lines += [f"  {p['field']}: {p['message']}" for p in setup["missing"]]
    if setup["warnings"]:
        lines.append("notification SMS will not reach customers until you set:")
        lines += [f"  {p['field']}: {p['message']}" for p in setup["warnings"]]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="TOML file (default: config.toml if any)")
        return sub

    command("serve", "web server, job worker and merchant bot in one process")
    sandbox_cmd = command("sandbox", "the whole product locally, every outside party simulated")
    sandbox_cmd.add_argument(
        "--port", type=int, help="listen on this port (0: any free one; default server.port)"
    )
    command("worker", "job workers only")
    command("bot", "the merchant's Telegram bot only (polling)")
    command("check-config", "validate the configuration and print it, secrets masked")
    migrate_cmd = command("migrate", "bring the database schema to this release")
    migrate_cmd.add_argument("--downgrade", metavar="REVISION", help="roll back to REVISION")
    shop = commands.add_parser("shop", help="manage shops").add_subparsers(
        dest="shop_command", required=True, metavar="ACTION"
    )
    actions = {
        "add": "register a shop (custom-app token: connect it)",
        "list": "every shop with its status",
        "status": "a shop's status, the account of each channel and what is missing",
        "setup": "what to paste where in each provider's console, and what is missing",
        "rotate-key": "replace a shop's admin API key (a lost key is never recovered)",
    }
    for name, help_text in actions.items():
        action = shop.add_parser(name, help=help_text)
        action.add_argument("--config", type=Path, help="TOML file (default: config.toml if any)")
        if name != "list":
            action.add_argument("--domain", required=True, help="X.myshopify.com")
        if name == "add":
            action.add_argument("--token", help="the custom app's Admin API access token")
            action.add_argument(
                "--api-secret",
                help="the custom app's API secret key (it signs the shop's webhooks)",
            )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "sandbox" and args.port is not None and not 0 <= args.port <= 65535:
        print(f"--port: {args.port} is not a port number (0 to 65535)", file=sys.stderr)
        return 2
    if args.command == "shop" and getattr(args, "api_secret", None) is not None:
        if not args.token:
            print("--api-secret: is given with --token, the custom app's token", file=sys.stderr)
            return 2
        if not args.api_secret.strip():
            print("--api-secret: must not be empty", file=sys.stderr)
            return 2
        args.api_secret = args.api_secret.strip()
    if args.command == "shop" and "domain" in args:
        args.domain = args.domain.lower()
        if not valid_shop_domain(args.domain):
            print(f"--domain: {args.domain!r} is not a *.myshopify.com domain", file=sys.stderr)
            return 2
    try:
        # Only the sandbox (its own key) and commands that touch no secret run without one.
        settings = load_settings(
            args.config, secret_key_required=args.command in {"serve", "worker", "bot", "shop"}
        )
        if args.command == "sandbox":
            require_sandbox_allowed(settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(masked(settings), indent=2))
        return 0
    setup_logging(settings.server.log_level)
    runs: dict[str, Any] = {
        "serve": lambda: serve(settings),
        "sandbox": lambda: run_sandbox(settings, args.port),
        "worker": lambda: run_workers(settings),
        "bot": lambda: run_bot(settings),
        "migrate": lambda: run_migrate(settings, args.downgrade),
        "shop": lambda: shop_command(settings, args),
    }
    try:
        asyncio.run(runs[args.command]())
    except onboarding.ShopExists as exc:
        print(f"--domain: shop {exc} already exists", file=sys.stderr)
        return 1
    except onboarding.ShopMissing as exc:
        print(f"--domain: no shop {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
