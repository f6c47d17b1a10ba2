"""A shop's settings as stored: the plain document plus its sealed credentials, the status
that follows from them, and saving a new document whole or not at all."""

from __future__ import annotations

from typing import Any

from clock import Clock
from flows.shops.settings import ShopSettings, is_complete, merge_secrets, validate_settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.models import Shop
from storage.shops import read_secrets, write_secrets

TOKEN_MISSING = "shopify.access_token"


def load(shop: Shop, box: SecretBox) -> ShopSettings:
    document = dict(shop.settings or {})
    credentials = read_secrets(shop, box).get("settings_credentials")
    if credentials:
        document["credentials"] = credentials
    return ShopSettings.model_validate(document)


def public(settings: ShopSettings) -> dict[str, Any]:
    return settings.public_document()


def missing(shop: Shop, settings: ShopSettings, box: SecretBox) -> list[str]:
    """What the shop still lacks to be `installed` (seed 000: both halves set up)."""
    lacking = [] if read_secrets(shop, box).get("shopify_access_token") else [TOKEN_MISSING]
    return lacking + is_complete(settings)


def status_for(shop: Shop, settings: ShopSettings, box: SecretBox) -> str:
    if shop.status == "uninstalled":
        return shop.status
    return "partially_installed" if missing(shop, settings, box) else "installed"


async def save(
    db: Database, box: SecretBox, clock: Clock, shop_id: int, document: dict[str, Any]
) -> ShopSettings:
    """Validate and store a whole settings document; `SettingsError` leaves nothing changed."""
    async with db.transaction() as session:
        shop = await session.get(Shop, shop_id, with_for_update=True)
        assert shop is not None
        merged = merge_secrets(document, load(shop, box))
        settings = validate_settings(merged, country=shop.country)
        stored = settings.stored_document()
        write_secrets(shop, box, settings_credentials=stored.pop("credentials"))
        shop.settings = stored
        shop.status = status_for(shop, settings, box)
        shop.updated_at = clock.now()
    return settings
