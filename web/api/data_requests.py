"""Admin API handlers for the shop's data request exports: each customers/data_request from
Shopify leaves the customer's data as a JSON document the merchant passes on to them."""

from __future__ import annotations

from aiohttp import web

from flows.shops import privacy
from web.api.auth import require_shop
from web.api.shops import unprocessable
from web.errors import ApiError, field_problem
from web.keys import db_key

URL = "/api/v1/data-requests/{id}"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


async def list_exports(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    raw = request.query.get("limit") or str(DEFAULT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise unprocessable(
            [field_problem("limit", f"must be a whole number from 1 to {MAX_LIMIT}")]
        )
    rows = await privacy.exports(request.app[db_key], shop.id, int(raw))
    return web.json_response(
        {
            "data_requests": [
                {
                    "id": row.id,
                    "shopify_request_id": row.shopify_request_id,
                    "customer": row.customer,
                    "orders_requested": row.orders,
                    "received_at": row.received_at.isoformat(),
                    "url": URL.format(id=row.id),
                }
                for row in rows
            ]
        }
    )


async def get_export(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    raw = request.match_info["id"]
    document = None
    if raw.isdigit() and len(raw) <= 18:
        document = await privacy.export_document(request.app[db_key], shop.id, int(raw))
    if document is None:
        raise ApiError(404, f"no data request {raw} in this shop", "not_found")
    return web.json_response(document)
