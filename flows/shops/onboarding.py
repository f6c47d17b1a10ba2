"""Connecting a shop: create it (API key, bot link code), store its Shopify token, then a job
registers the webhooks, reads the shop's name, currency, time zone and phone, and starts
reconciliation. The same path serves the OAuth install, `main.py shop add` and the admin API.

A token given by `shop add` or the admin API is a custom app's, made in the shop's admin:
Shopify signs that app's webhooks with its own API secret key, which the merchant gives with
the token. Without it the shop's webhooks cannot be verified, and its orders come only from
reconciliation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from clock import Clock
from flows.jobs import provider_failure
from flows.shops import config as shop_config
from flows.shops.reconcile import INTERVAL, RECONCILE_JOB
from flows.shops.webhook_secrets import seal_app_secret
from providers.base import ProviderError
from providers.shopify.admin import ShopifyAdmin
from providers.shopify.webhooks import SCOPED_TOPICS, SUBSCRIBED_TOPICS
from storage.crypto import SecretBox
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob, PermanentJobError
from storage.models import Activity, Shop
from storage.shops import (
    installed_shop,
    issue_secrets,
    read_secrets,
    replace_api_key,
    shop_by_domain,
    write_secrets,
)

_LOGGER = logging.getLogger(__name__)

CONNECT_JOB = "shopify.connect"


class ShopMissing(Exception):
    """No shop has this domain."""


class ShopExists(Exception):
    """A shop with this domain is already registered."""


# How the shop's webhooks are verified (`webhook_signing`).
PLATFORM_APP, CUSTOM_APP = "platform_app", "custom_app"
RECONCILIATION_ONLY = "reconciliation_only"
_MINUTES = int(INTERVAL.total_seconds() // 60)
SIGNING_MESSAGES = {
    PLATFORM_APP: "webhooks are verified with the platform app's API secret key",
    CUSTOM_APP: "webhooks are verified with the custom app's API secret key",
    RECONCILIATION_ONLY: "webhooks are refused: the custom app's API secret key, which signs "
    "them, was not given; orders arrive only by the "
    f"{_MINUTES}-minute reconciliation until it is (shop add --api-secret)",
}


@dataclass(frozen=True)
class Connected:
    shop_id: int
    domain: str
    status: str
    webhooks: str  # PLATFORM_APP | CUSTOM_APP | RECONCILIATION_ONLY
    api_key: str | None = None  # only when the shop was created now
    bot_link_code: str | None = None


@dataclass(frozen=True)
class ShopifyAccess:
    """What a shop gives to connect: an access token, and whether it is a custom app's
    (with that app's API secret key, when given) or the platform app's (OAuth)."""

    token: str
    custom_app: bool = True
    app_secret: str = ""


async def create_shop(
    db: Database,
    queue: JobQueue,
    box: SecretBox,
    clock: Clock,
    domain: str,
    access: ShopifyAccess | None,
) -> Connected:
    """Register a new shop; with a token, connecting to Shopify starts at once (as a job)."""
    now = clock.now()
    try:
        async with db.transaction() as session:
            if await shop_by_domain(session, domain) is not None:
                raise ShopExists(domain)
            shop = Shop(domain=domain, name=domain.split(".")[0], created_at=now, updated_at=now)
            issued = issue_secrets(shop, now)
            if access:
                _store_access(shop, box, access)
            session.add(shop)
            await session.flush()
            if access:
                await queue.enqueue(session, _connect_job(shop))
    except IntegrityError:
        raise ShopExists(domain) from None
    return Connected(
        shop.id,
        domain,
        shop.status,
        webhook_signing(shop, box),
        issued.api_key,
        issued.bot_link_code,
    )


async def connect_with_token(
    db: Database,
    queue: JobQueue,
    box: SecretBox,
    clock: Clock,
    domain: str,
    access: ShopifyAccess,
) -> Connected:
    """Store a (new) access token for the shop, creating the shop if it is new. A custom
    app's secret given before is kept when none is given now."""
    try:
        return await create_shop(db, queue, box, clock, domain, access)
    except ShopExists:
        pass
    async with db.transaction() as session:
        shop = await shop_by_domain(session, domain)
        assert shop is not None
        _store_access(shop, box, access)
        if shop.status == "uninstalled":
            shop.status = "partially_installed"
        shop.updated_at = clock.now()
        await queue.enqueue(session, _connect_job(shop))
    return Connected(shop.id, domain, shop.status, webhook_signing(shop, box))


def _store_access(shop: Shop, box: SecretBox, access: ShopifyAccess) -> None:
    app = CUSTOM_APP if access.custom_app else PLATFORM_APP
    write_secrets(shop, box, shopify_access_token=access.token, shopify_app=app)
    if access.app_secret or not access.custom_app:
        shop.app_secret = seal_app_secret(box, access.app_secret)


def webhook_signing(shop: Shop, box: SecretBox) -> str:
    """How the shop's webhooks are verified: with the platform app's secret, its custom
    app's, or not at all (a custom app's token without its secret)."""
    if shop.app_secret:
        return CUSTOM_APP
    if read_secrets(shop, box).get("shopify_app") == CUSTOM_APP:
        return RECONCILIATION_ONLY
    return PLATFORM_APP


async def webhook_signing_of(db: Database, box: SecretBox, domain: str) -> str:
    """`webhook_signing` of the shop with this domain; ShopMissing if there is none."""
    async with db.sessions() as session:
        shop = await shop_by_domain(session, domain)
    if shop is None:
        raise ShopMissing(domain)
    return webhook_signing(shop, box)


@dataclass(frozen=True)
class ShopRow:
    shop_id: int
    domain: str
    name: str
    status: str


async def list_shops(db: Database) -> list[ShopRow]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(Shop.id, Shop.domain, Shop.name, Shop.status).order_by(Shop.domain)
        )
        return [ShopRow(*row) for row in rows]


async def find_shop(db: Database, domain: str) -> int:
    """The id of the shop with this domain; ShopMissing if there is none."""
    async with db.sessions() as session:
        shop = await shop_by_domain(session, domain)
    if shop is None:
        raise ShopMissing(domain)
    return shop.id


async def rotate_key(db: Database, clock: Clock, domain: str) -> str:
    """Replace the shop's API key (a lost key is replaced, never recovered)."""
    async with db.transaction() as session:
        shop = await shop_by_domain(session, domain)
        if shop is None:
            raise ShopMissing(domain)
        api_key = replace_api_key(shop)
        shop.updated_at = clock.now()
    _LOGGER.info("shop %s: API key replaced", domain)
    return api_key


def _connect_job(shop: Shop) -> NewJob:
    return NewJob(CONNECT_JOB, {"shop_id": shop.id}, shop_id=shop.id)


class ShopConnector:
    """The CONNECT_JOB handler."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        box: SecretBox,
        clock: Clock,
        admin: ShopifyAdmin,
        webhook_url: str,
    ) -> None:
        self.db = db
        self.queue = queue
        self.box = box
        self.clock = clock
        self.admin = admin
        self.webhook_url = webhook_url

    async def handle(self, job: ClaimedJob) -> None:
        shop, token = await installed_shop(self.db, self.box, job.payload["shop_id"])
        if shop is None:
            return
        if not token:
            raise PermanentJobError(f"shop {shop.domain} has no Shopify access token")
        try:
            info = await self.admin.shop_info(shop.domain, token)
            registered = [
                topic for topic in SUBSCRIBED_TOPICS if await self._register(shop, token, topic)
            ]
        except ProviderError as exc:
            raise provider_failure(exc) from exc
        now = self.clock.now()
        async with self.db.transaction() as session:
            shop = await session.get(Shop, shop.id)
            if shop is None:
                return
            shop.name = info.name or shop.name
            shop.currency = info.currency or shop.currency
            shop.timezone = info.iana_timezone or shop.timezone
            shop.phone = info.phone or shop.phone
            shop.country = info.country_code or shop.country
            # "hi", "en-IN", "pt-BR": the language part; the settings may override it.
            shop.language = info.primary_locale.split("-")[0].lower()[:8] or shop.language
            await shop_config.refresh_status(session, shop, self.box)
            shop.updated_at = now
            session.add(
                Activity(
                    shop_id=shop.id,
                    kind="shop_connected",
                    mode="shopify",
                    detail={"webhooks": registered},
                    created_at=now,
                )
            )
            await self.queue.enqueue(
                session, NewJob(RECONCILE_JOB, {"shop_id": shop.id}, shop_id=shop.id)
            )
        _LOGGER.info("shop %s connected: webhooks registered", shop.domain)

    async def _register(self, shop: Shop, token: str, topic: str) -> bool:
        """Subscribe to `topic`; False when the token lacks the scope a scoped topic needs."""
        try:
            await self.admin.register_webhook(shop.domain, token, topic, self.webhook_url)
        except ProviderError as exc:
            # Shopify's refusal of a topic outside the token's scopes: ACCESS_DENIED, or a
            # user error naming the permission; either way not a failure to retry.
            if exc.retryable or topic not in SCOPED_TOPICS:
                raise
            _LOGGER.warning(
                "shop %s: %s not registered, the token lacks %s (reinstall the app to grant it)",
                shop.domain,
                topic,
                SCOPED_TOPICS[topic],
            )
            return False
        return True
