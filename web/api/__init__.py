"""The admin JSON API under /api/v1 (OpenAPI document at /api/v1/openapi.json)."""

from __future__ import annotations

from aiohttp import web

from web.api import (
    accounts,
    conversations,
    data_requests,
    notifications,
    openapi,
    orders,
    reports,
    shops,
)

PREFIX = "/api/v1"


def setup_routes(app: web.Application) -> None:
    app.on_response_prepare.append(_no_store)
    app.router.add_post(f"{PREFIX}/shops", shops.create)
    app.router.add_get(f"{PREFIX}/shop/status", shops.status)
    app.router.add_get(f"{PREFIX}/shop/settings", shops.get_settings)
    app.router.add_put(f"{PREFIX}/shop/settings", shops.put_settings)
    app.router.add_get(f"{PREFIX}/shop/accounts", accounts.list_accounts)
    app.router.add_post(f"{PREFIX}/shop/accounts", accounts.connect)
    app.router.add_delete(f"{PREFIX}/shop/accounts/{{account_id}}", accounts.remove)
    app.router.add_put(f"{PREFIX}/shop/channels", accounts.choose_channels)
    app.router.add_get(f"{PREFIX}/shop/setup", accounts.setup)
    app.router.add_get(f"{PREFIX}/orders", reports.list_orders)
    app.router.add_get(f"{PREFIX}/orders/{{name}}", reports.order_card)
    app.router.add_post(f"{PREFIX}/orders/{{name}}/cancel", orders.cancel)
    app.router.add_post(f"{PREFIX}/orders/{{name}}/refund", orders.refund)
    app.router.add_get(f"{PREFIX}/calls", reports.list_calls)
    app.router.add_get(f"{PREFIX}/messages", reports.list_messages)
    app.router.add_get(f"{PREFIX}/missed-calls", reports.list_missed_calls)
    app.router.add_get(f"{PREFIX}/data-requests", data_requests.list_exports)
    app.router.add_get(f"{PREFIX}/data-requests/{{id}}", data_requests.get_export)
    app.router.add_get(f"{PREFIX}/customers/{{phone}}/consent", conversations.get_consent)
    app.router.add_put(f"{PREFIX}/customers/{{phone}}/consent", conversations.put_consent)
    app.router.add_get(f"{PREFIX}/threads", conversations.list_threads)
    app.router.add_get(f"{PREFIX}/threads/{{id}}", conversations.get_thread)
    app.router.add_post(f"{PREFIX}/threads/{{id}}/reply", conversations.reply)
    app.router.add_post(f"{PREFIX}/notifications/preview", notifications.preview_notice)
    app.router.add_get(
        f"{PREFIX}/notifications/shipments-webhook", notifications.shipments_webhook
    )
    app.router.add_put(f"{PREFIX}/notifications/whatsapp/{{event}}", notifications.put_whatsapp)
    app.router.add_get(f"{PREFIX}/billing", notifications.get_billing)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi.document)


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Admin API answers carry new keys and shop data: no browser or proxy may keep them."""
    if request.path.startswith(f"{PREFIX}/"):
        response.headers["Cache-Control"] = "no-store"
