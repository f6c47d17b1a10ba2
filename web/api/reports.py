"""Admin API handlers for the merchant's reports: orders (with totals, and one card per order),
calls, messages and missed calls. The filter rules and queries live in `flows.orders.reports`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from flows.orders import reports
from flows.orders.card import LiveStatus, live_status
from flows.orders.reports import OrderRef
from flows.shops import config as shop_config
from storage.models import Activity, Call, Message, MissedCall, Order, Shop
from web.api.auth import require_shop
from web.api.orders import merchant_orders
from web.api.shops import unprocessable
from web.errors import ApiError, field_problem
from web.keys import clock_key, db_key

ORDER_URL = "/api/v1/orders/{number}"

# Messages store "out" / "in"; the API speaks of directions as the calls report does.
_DIRECTIONS = {"out": "outbound", "in": "inbound"}


async def list_orders(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    filters = _filters(request, shop, reports.ORDER_FILTERS, reports.VERIFICATION_STATUSES)
    report = await reports.orders(request.app[db_key], shop.id, filters)
    return web.json_response(
        {
            "orders": [_order(order) for order in report.page.rows],
            "totals": report.totals,
            "next_cursor": report.page.next_cursor,
        }
    )


async def order_card(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    name = request.match_info["name"]
    card = await reports.order_card(request.app[db_key], shop.id, name)
    if card is None:
        raise ApiError(404, f"no order {name} in this shop")
    ref = OrderRef(card.order.name, card.order.number)
    details = await merchant_orders(request).details(card.order)
    live = None if details is None else live_status(details, shop_config.shop_zone(shop))
    return web.json_response(
        {
            "order": _order(card.order)
            | {
                "gateways": card.order.gateways,
                "financial_status": card.order.financial_status,
                "fulfillment_status": card.order.fulfillment_status,
                "cancelled_at": _time(card.order.cancelled_at),
            },
            "timeline": [_activity(activity) for activity in card.timeline],
            "calls": [_call(call, ref) for call in card.calls],
            "messages": [_message(message, ref) for message in card.messages],
            "live": _live(live),
        }
    )


def _live(live: LiveStatus | None) -> dict[str, Any] | None:
    """The statuses and lines as Shopify holds them now (None: Shopify could not say)."""
    if live is None:
        return None
    return {
        "order": live.order,
        "payment": live.payment,
        "fulfillment": live.fulfillment,
        "refunded": live.refunded,
        "currency": live.currency,
        "line_items": [
            {
                "id": line.id,
                "title": line.title,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "refundable": line.refundable,
                "shipments": list(line.shipments),
                "tracking_urls": list(line.tracking_urls),
            }
            for line in live.lines
        ],
    }


async def list_calls(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    filters = _filters(request, shop, reports.CALL_FILTERS)
    page = await reports.calls(request.app[db_key], shop.id, filters)
    return web.json_response(
        {"calls": [_call(*row) for row in page.rows], "next_cursor": page.next_cursor}
    )


async def list_messages(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    filters = _filters(request, shop, reports.MESSAGE_FILTERS)
    page = await reports.messages(request.app[db_key], shop.id, filters)
    return web.json_response(
        {"messages": [_message(*row) for row in page.rows], "next_cursor": page.next_cursor}
    )


async def list_missed_calls(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    filters = _filters(request, shop, reports.MISSED_CALL_FILTERS)
    page = await reports.missed_calls(request.app[db_key], shop.id, filters)
    return web.json_response(
        {
            "missed_calls": [_missed_call(*row) for row in page.rows],
            "next_cursor": page.next_cursor,
        }
    )


def _filters(
    request: web.Request,
    shop: Shop,
    accepted: frozenset[str],
    statuses: Collection[str] | None = None,
) -> reports.Filters:
    try:
        return reports.parse_filters(
            _given(request.query, accepted),
            accepted,
            country=shop.country,
            zone=shop_config.shop_zone(shop),
            now=request.app[clock_key].now(),
            statuses=statuses,
        )
    except reports.FilterError as exc:
        raise unprocessable(
            [field_problem(name, message) for name, message in exc.problems.items()]
        ) from None


def _given(query: Mapping[str, str], accepted: frozenset[str]) -> dict[str, str]:
    """The query without its empty filters: `?order=&from=` filters nothing, as the document
    allows (an unknown parameter stays, to be refused)."""
    known = accepted | {"from", "to", "limit", "cursor"}
    return {name: value for name, value in query.items() if value.strip() or name not in known}


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _ref(ref: OrderRef | None) -> dict[str, str] | None:
    if ref is None:
        return None
    return {"name": ref.name, "url": ORDER_URL.format(number=ref.number)}


def _order(order: Order) -> dict[str, Any]:
    return {
        "name": order.name,
        "number": order.number,
        "placed_at": _time(order.placed_at),
        "phone": order.phone,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "payment_method": order.payment_method,
        "verification_status": order.verification_status,
        "skip_reason": order.skip_reason,
        "tags": order.tags,
        "url": ORDER_URL.format(number=order.number),
    }


def _activity(activity: Activity) -> dict[str, Any]:
    return {
        "kind": activity.kind,
        "mode": activity.mode,
        "detail": activity.detail,
        "created_at": _time(activity.created_at),
    }


def _call(call: Call, order: OrderRef | None) -> dict[str, Any]:
    return {
        "provider": call.provider,
        "status": call.status,
        "direction": "outbound",
        "to_phone": call.to_phone,
        "from_phone": call.from_phone,
        "attempt": call.attempt,
        "input_digits": call.input_digits,
        "duration_seconds": call.duration_seconds,
        "created_at": _time(call.created_at),
        "ended_at": _time(call.ended_at),
        "order": _ref(order),
    }


def _message(message: Message, order: OrderRef | None) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "direction": _DIRECTIONS.get(message.direction, message.direction),
        "provider": message.provider,
        "account": message.account,
        "to_phone": message.to_phone,
        "from_phone": message.from_phone,
        "body": message.body,
        "status": message.status,
        "error_code": message.error_code,
        "segments": message.segments,
        "created_at": _time(message.created_at),
        "order": _ref(order),
    }


def _missed_call(call: MissedCall, orders: list[OrderRef]) -> dict[str, Any]:
    return {
        "from_phone": call.from_phone,
        "to_phone": call.to_phone,
        "received_at": _time(call.received_at),
        "orders": [_ref(order) for order in orders],
    }
