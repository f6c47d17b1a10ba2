"""A shop's settings as stored, the status that follows from them and from its accounts,
and saving a new document whole or not at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from flows.channels.accounts import shop_accounts
from flows.channels.setup import missing
from flows.shops.settings import FieldProblem, ShopSettings, is_zone, validate_settings
from storage.crypto import SecretBox
from storage.db import Database
from storage.models import Shop
from storage.shops import read_secrets


def stored(shop: Shop) -> ShopSettings:
    """The settings document as the merchant saved it ("" where the shop's own value holds)."""
    return ShopSettings.model_validate(shop.settings or {})


def load(shop: Shop) -> ShopSettings:
    """The settings the shop works by: `stored`, with the shop's own time zone for the
    calling window unless the merchant named one."""
    settings = stored(shop)
    if settings.ivr.timezone:
        return settings
    ivr = settings.ivr.model_copy(update={"timezone": shop_zone(shop)})
    return settings.model_copy(update={"ivr": ivr})


def shop_zone(shop: Shop) -> str:
    """The shop's IANA time zone from Shopify; UTC until it is known (or if it is unknown
    here)."""
    return shop.timezone if is_zone(shop.timezone) else "UTC"


async def editing(db: Database, shop_id: int) -> tuple[dict[str, Any], str]:
    """The stored settings document, to be changed and saved whole, and the shop's country
    (the rules for shops in India depend on it)."""
    async with db.sessions() as session:
        shop = await session.get(Shop, shop_id)
        assert shop is not None
        return stored(shop).document(), shop.country


async def problems(session: AsyncSession, shop: Shop, box: SecretBox) -> list[FieldProblem]:
    """What the shop still lacks to be `installed`."""
    has_token = bool(read_secrets(shop, box).get("shopify_access_token"))
    return missing(shop, load(shop), await shop_accounts(session, shop.id), has_token)


async def refresh_status(session: AsyncSession, shop: Shop, box: SecretBox) -> None:
    """Set the shop's status from what it has now (an uninstalled shop stays so)."""
    if shop.status != "uninstalled":
        lacking = await problems(session, shop, box)
        shop.status = "partially_installed" if lacking else "installed"


async def save(
    db: Database,
    box: SecretBox,
    clock: Clock,
    shop_id: int,
    document: dict[str, Any],
    template_variables: Callable[[str], Awaitable[int | None]] | None = None,
) -> ShopSettings:
    """Validate and store a whole settings document; `SettingsError` leaves nothing changed.

    `template_variables` counts a WhatsApp template's variables (None when it cannot tell),
    so the document's mapping of them is checked against the template itself."""
    variables = None
    section = document.get("whatsapp") if isinstance(document, dict) else None
    template_id = section.get("template_id") if isinstance(section, dict) else None
    if template_variables is not None and isinstance(template_id, str) and template_id.strip():
        variables = await template_variables(template_id.strip())
    async with db.transaction() as session:
        shop = await session.get(Shop, shop_id, with_for_update=True)
        assert shop is not None
        settings = validate_settings(document, country=shop.country, template_variables=variables)
        shop.settings = settings.document()
        await refresh_status(session, shop, box)
        shop.updated_at = clock.now()
    return settings
