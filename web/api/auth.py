"""Who is calling the admin API: the platform admin (security.admin_token) or one shop (its key).

A shop is found only by the hash of its own key, so a request can never reach another shop.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from storage.models import Shop
from storage.shops import shop_by_api_key
from web.errors import ApiError
from web.keys import db_key, settings_key


def bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_admin(request: web.Request) -> None:
    expected = request.app[settings_key].security.admin_token.get_secret_value()
    if not expected:
        raise ApiError(403, "the platform admin API is off: set security.admin_token")
    if not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise ApiError(401, "a valid platform admin Bearer token is required")


async def require_shop(request: web.Request) -> Shop:
    key = bearer(request)
    if not key:
        raise ApiError(401, "a shop API key is required as a Bearer token")
    async with request.app[db_key].sessions() as session:
        shop = await shop_by_api_key(session, key)
    if shop is None:
        raise ApiError(401, "unknown API key")
    return shop
