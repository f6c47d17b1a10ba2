"""Shopify webhook deliveries: the HMAC check over the raw body and the delivery headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

PRIVACY_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
SUBSCRIBED_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/fulfilled",
    "fulfillments/create",
    "fulfillments/update",
    "refunds/create",
    "customers/update",
    "app/uninstalled",
    "returns/approve",
)
# Topics a shop's token may lack the scope for (it connected before we asked for it):
# Shopify refuses them and the shop goes on without.
SCOPED_TOPICS = {"returns/approve": "read_returns"}

TOPIC_HEADER = "X-Shopify-Topic"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
SHOP_HEADER = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"
API_VERSION_HEADER = "X-Shopify-API-Version"
# The widths of the receipt's columns the headers are stored in.
_MAX_TOPIC, _MAX_ID = 64, 255


@dataclass(frozen=True)
class WebhookDelivery:
    """What the headers of one Shopify webhook delivery say about it."""

    topic: str
    shop_domain: str
    webhook_id: str
    event_id: str | None
    triggered_at: datetime | None
    api_version: str


def verify_webhook(body: bytes, hmac_header: str | None, secret: str) -> bool:
    """True when `hmac_header` is the base64 HMAC-SHA256 of the raw `body` under `secret`."""
    if not hmac_header or not secret:
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    # Bytes on both sides: compare_digest refuses non-ASCII str, and headers may carry any byte.
    return hmac.compare_digest(expected, hmac_header.strip().encode("utf-8", "replace"))


def parse_delivery(headers: Mapping[str, str]) -> WebhookDelivery:
    """Read a delivery's headers (any casing); ValueError names the missing or bad header."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return WebhookDelivery(
        topic=_required(lowered, TOPIC_HEADER, _MAX_TOPIC),
        shop_domain=_required(lowered, SHOP_HEADER, _MAX_ID).lower(),
        webhook_id=_required(lowered, WEBHOOK_ID_HEADER, _MAX_ID),
        event_id=_optional(lowered, EVENT_ID_HEADER, _MAX_ID),
        triggered_at=_triggered_at(_optional(lowered, TRIGGERED_AT_HEADER)),
        api_version=_optional(lowered, API_VERSION_HEADER) or "",
    )


def _optional(headers: Mapping[str, str], name: str, limit: int = 0) -> str | None:
    value = headers.get(name.lower(), "").strip()
    if limit and len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters")
    return value or None


def _required(headers: Mapping[str, str], name: str, limit: int = 0) -> str:
    value = _optional(headers, name, limit)
    if value is None:
        raise ValueError(f"{name}: missing")
    return value


def _triggered_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{TRIGGERED_AT_HEADER}: not an ISO-8601 time: {value!r}") from None
