"""Shop records: creation with a hashed API key and bot link code, lookups, sealed secrets.

API keys and link codes are random and shown once; only their SHA-256 is stored, so a
lookup by hash is as safe as a constant-time compare and needs no scan.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.crypto import SecretBox
from storage.db import Database
from storage.models import Shop

BOT_LINK_TTL = timedelta(hours=24)
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> str:
    return "otk_" + secrets.token_urlsafe(32)


def new_link_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


@dataclass(frozen=True)
class IssuedSecrets:
    api_key: str
    bot_link_code: str


def issue_secrets(shop: Shop, now: datetime) -> IssuedSecrets:
    """Give the shop a new API key and bot link code (replacing any earlier ones)."""
    issued = IssuedSecrets(new_api_key(), new_link_code())
    shop.api_key_hash = digest(issued.api_key)
    shop.bot_link_code_hash = digest(issued.bot_link_code)
    shop.bot_link_expires_at = now + BOT_LINK_TTL
    return issued


def replace_api_key(shop: Shop) -> str:
    """A new API key for the shop; the old one stops working at once."""
    api_key = new_api_key()
    shop.api_key_hash = digest(api_key)
    return api_key


async def shop_by_domain(session: AsyncSession, domain: str) -> Shop | None:
    return await session.scalar(select(Shop).where(Shop.domain == domain))


async def shop_by_api_key(session: AsyncSession, api_key: str) -> Shop | None:
    if not api_key:
        return None
    return await session.scalar(select(Shop).where(Shop.api_key_hash == digest(api_key)))


def read_secrets(shop: Shop, box: SecretBox) -> dict[str, Any]:
    return box.open(shop.credentials)


def write_secrets(shop: Shop, box: SecretBox, **changes: Any) -> None:
    """Merge `changes` into the shop's sealed secrets document."""
    shop.credentials = box.seal({**box.open(shop.credentials), **changes})


async def installed_shop(db: Database, box: SecretBox, shop_id: int) -> tuple[Shop | None, str]:
    """The shop (None if gone or uninstalled) and its Shopify access token ("" if none)."""
    async with db.sessions() as session:
        shop = await session.get(Shop, shop_id)
    if shop is None or shop.status == "uninstalled":
        return None, ""
    return shop, read_secrets(shop, box).get("shopify_access_token", "")
