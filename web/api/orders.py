"""Admin API handlers for the merchant's order actions: cancel, and refund (whole, or chosen
lines and/or an amount) with seed 003's rules. The rules and the Shopify calls live in
`flows.orders.actions` (the merchant bot's too)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.orders.actions import (
    CANCEL_REASONS,
    ActionFailed,
    ActionRefused,
    Done,
    MerchantOrders,
    RefundLine,
)
from providers.shopify.admin import ShopifyAdmin
from web.api.auth import require_shop
from web.api.shops import read_json, unprocessable
from web.errors import ApiError, field_problem
from web.keys import clock_key, db_key, http_key, secret_box_key, settings_key

# Who the timeline says asked for an action made through this API.
API_ACTOR = "api"

Reason = Literal[CANCEL_REASONS]


class CancelOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason = Field(description="one of Shopify's cancel reasons")
    refund: bool | None = Field(
        None,
        description="default: refund a paid order in the same step; true on an unpaid order "
        "is refused (409)",
    )
    restock: bool = True
    notify_customer: bool = False


class RefundItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | int = Field(description="Shopify's line item id (numeric or gid)")
    # JSON Schema's integers include 2.0; a fraction is still refused.
    quantity: int = Field(ge=1, strict=False, description="how many of the line to refund")


class RefundOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    line_items: list[RefundItem] | None = Field(
        None,
        min_length=1,
        description="a partial refund: these lines and quantities (Shopify suggests the amount)",
    )
    amount: str | None = Field(
        None,
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,2})?$",
        description="a partial refund of this amount (with line_items: instead of Shopify's "
        "suggestion); at most what is left to refund",
    )

    returned: bool = Field(False, description="a delivered order's return has arrived")
    no_return: bool = Field(
        False, description="refund a delivered order without its return (a no-return policy)"
    )
    reason: Reason = Field(
        "CUSTOMER", description="the cancel reason when a paid order not delivered is cancelled"
    )
    notify_customer: bool = False


async def cancel(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    body = await _body(request, CancelOrder)
    orders = merchant_orders(request)
    done = await _act(orders.cancel(shop.id, request.match_info["name"], by=API_ACTOR, **body))
    return web.json_response(_done(done))


async def refund(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    body = await _body(request, RefundOrder)
    body["line_items"] = [
        RefundLine(str(item["id"]), item["quantity"]) for item in body["line_items"] or ()
    ]
    orders = merchant_orders(request)
    done = await _act(orders.refund(shop.id, request.match_info["name"], by=API_ACTOR, **body))
    return web.json_response(_done(done))


def merchant_orders(request: web.Request) -> MerchantOrders:
    """The order actions' use case, with the app's Shopify client."""
    app = request.app
    shopify = app[settings_key].shopify
    client = ShopifyAdmin(app[http_key], shopify.admin_url, shopify.api_version)
    return MerchantOrders(app[db_key], app[clock_key], app[secret_box_key], client)


async def _body(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    try:
        return model.model_validate(await read_json(request)).model_dump()
    except ValidationError as exc:
        raise unprocessable(
            [field_problem(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors()]
        ) from None


async def _act(action: Any) -> Done:
    try:
        return await action
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except ActionRefused as exc:
        raise ApiError(
            409, exc.message, "refused", fields=[field_problem(exc.field, exc.message)]
        ) from None
    except ActionFailed as exc:
        raise ApiError(502, str(exc), "shopify_failed") from None


def _done(done: Done) -> dict[str, Any]:
    plan = done.plan
    return {
        "cancelled": plan.cancel,
        "refunded": plan.refund,
        "reason": plan.reason,
        "amount": plan.amount if plan.refund else None,
        "currency": plan.currency,
        "line_items": [{"title": line.title, "quantity": line.quantity} for line in plan.lines],
        "financial_status": done.financial_status,
    }
