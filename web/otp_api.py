"""The OTP API of the checkout's post-purchase extension: `POST /api/otp/verify` and
`POST /api/otp/resend`, naming the shop by its myshopify domain and the order by its Shopify
id (or GID) or name.

The extension calls from the shop's storefront, so answers carry CORS headers for the shop's
own origin only: `https://{shop}` of the body's shop, or for the preflight (which has no
body) any `https://*.myshopify.com`. Another origin gets none, and the browser refuses it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from flows.customer_page import CustomerDesk
from providers.shopify.oauth import valid_shop_domain
from web.api.shops import read_json, unprocessable
from web.errors import ApiError, field_problem
from web.keys import customer_desk_key

VERIFY_PATH = "/api/otp/verify"
RESEND_PATH = "/api/otp/resend"
_CODE = re.compile(r"[0-9]{4,8}")
_ORDER_MAX = 64  # Order.shopify_order_id and Order.name columns
_GID = "gid://shopify/"
_ALLOW = {
    hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST, OPTIONS",
    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Content-Type",
}
_PREFLIGHT_MAX_AGE = "600"

# (desk, shop, order, code) -> the answer's body, or None when the shop has no such order.
Act = Callable[[CustomerDesk, str, str, str], Awaitable[dict[str, Any] | None]]


def setup_routes(app: web.Application) -> None:
    app.router.add_post(VERIFY_PATH, verify)
    app.router.add_post(RESEND_PATH, resend)
    app.router.add_route(hdrs.METH_OPTIONS, VERIFY_PATH, preflight)
    app.router.add_route(hdrs.METH_OPTIONS, RESEND_PATH, preflight)


async def verify(request: web.Request) -> web.Response:
    """`{shop, order, code}` -> `{result, attempts_left}` (result: verified | wrong | locked |
    expired | already_verified | not_pending)."""
    return await _serve(request, _verify, need_code=True)


async def resend(request: web.Request) -> web.Response:
    """`{shop, order}` -> `{result, retry_after}` (result: resent | too_early | resend_limit |
    already_verified | not_pending; retry_after in whole seconds)."""
    return await _serve(request, _resend, need_code=False)


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get(hdrs.ORIGIN, "")
    storefront = origin.startswith("https://") and valid_shop_domain(origin[len("https://") :])
    response = _cors(request, web.Response(status=204), storefront)
    if storefront:
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = _PREFLIGHT_MAX_AGE
    return response


async def _verify(desk: CustomerDesk, shop: str, order: str, code: str) -> dict[str, Any] | None:
    outcome = await desk.enter(shop, order, code)
    if outcome is None:
        return None
    return {"result": outcome.result, "attempts_left": outcome.attempts_left}


async def _resend(desk: CustomerDesk, shop: str, order: str, _code: str) -> dict[str, Any] | None:
    outcome = await desk.resend(shop, order)
    if outcome is None:
        return None
    return {"result": outcome.result, "retry_after": math.ceil(outcome.retry_after)}


async def _serve(request: web.Request, act: Act, need_code: bool) -> web.Response:
    shop = ""
    try:
        document = await read_json(request)
        if not isinstance(document, dict):
            raise unprocessable([field_problem("body", "must be a JSON object")])
        shop, order, code, problems = _fields(document, need_code)
        if problems:
            raise unprocessable(problems)
        body = await act(request.app[customer_desk_key], shop, order, code)
        if body is None:
            raise ApiError(404, f"shop {shop} has no order {order} to verify", "not_found")
        response = web.json_response(body)
    except ApiError as exc:
        response = exc.response()
    allowed = bool(shop) and request.headers.get(hdrs.ORIGIN) == f"https://{shop}"
    return _cors(request, response, allowed)


def _fields(
    document: dict[str, Any], need_code: bool
) -> tuple[str, str, str, list[dict[str, str]]]:
    """(shop, order, code, problems): the valid shop even when another field is wrong, so
    that the extension can read the 422."""
    problems = []
    shop = document.get("shop")
    if isinstance(shop, str) and valid_shop_domain(shop.strip().lower()):
        shop = shop.strip().lower()
    else:
        rule = "must be the shop's myshopify.com domain, e.g. example.myshopify.com"
        problems.append(field_problem("shop", "is required" if shop is None else rule))
        shop = ""
    order = document.get("order")
    if isinstance(order, int) and not isinstance(order, bool):
        order = str(order)
    if isinstance(order, str) and order.startswith(_GID):
        order = order.rpartition("/")[2]
    if not isinstance(order, str) or not order.strip() or len(order) > _ORDER_MAX:
        rule = "must be the order's Shopify id or name, e.g. 5512345678901 or #1001"
        problems.append(field_problem("order", "is required" if order is None else rule))
        order = ""
    code = document.get("code") if need_code else ""
    if need_code and not (isinstance(code, str) and _CODE.fullmatch(code)):
        rule = "must be the code of 4 to 8 digits, as a string"
        problems.append(field_problem("code", "is required" if code is None else rule))
        code = ""
    return shop, order.strip(), str(code), problems


def _cors(request: web.Request, response: web.Response, allowed: bool) -> web.Response:
    response.headers[hdrs.VARY] = hdrs.ORIGIN
    if allowed:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = request.headers[hdrs.ORIGIN]
        response.headers.update(_ALLOW)
    return response
