"""The shipment webhook's per-shop secret path token, and accepting its events.

Carriers and fulfilment platforms sign nothing: the URL the merchant gives them carries
`{shop_id}.{mac}`, a keyed HMAC of the shop id under its own label (an Exotel callback
token does not open it). Nothing is stored; tokens made with a previous key are still
accepted after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from flows.notifications.events import JourneyEvent
from flows.notifications.job import notify_job
from storage.jobs import JobQueue
from storage.models import Shop


def _mac(secret_key: str, shop_id: int) -> str:
    digest = hmac.new(secret_key.encode(), f"shipments:{shop_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


def shipments_token(secret_key: str, shop_id: int) -> str:
    return f"{shop_id}.{_mac(secret_key, shop_id)}"


def shipments_url(public_url: str, secret_key: str, shop_id: int) -> str:
    """The URL the merchant gives their carrier or fulfilment platform."""
    return f"{public_url}/webhooks/shipments/{shipments_token(secret_key, shop_id)}"


def shop_of_token(secret_keys: Sequence[str], token: str) -> int | None:
    """The shop a shipment webhook token belongs to, or None for a forged or malformed one."""
    if not token.isascii():
        return None
    shop_part, _, mac = token.partition(".")
    if not shop_part.isdigit() or len(shop_part) > 18:
        return None
    shop_id = int(shop_part)
    # Every key is tried, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(mac, _mac(key, shop_id)) for key in secret_keys]
    return shop_id if any(matches) else None


async def accept(
    session: AsyncSession, queue: JobQueue, shop_id: int, event: JourneyEvent
) -> bool:
    """Queue the event's notification job; False when the shop is gone or uninstalled."""
    shop = await session.get(Shop, shop_id)
    if shop is None or shop.status == "uninstalled":
        return False
    await queue.enqueue(session, notify_job(shop.id, event))
    return True
