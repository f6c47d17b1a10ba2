"""The OTP API of the checkout's extensions: `POST /api/otp/verify` and `POST /api/otp/resend`,
naming the order by its Shopify id (or GID) or name.

The caller is a Shopify checkout or post-purchase extension. It authenticates with its
Shopify session token (`shopify.sessionToken.get()`, or the post-purchase `inputData.token`)
as `Authorization: Bearer <token>`: a JWT signed with the app's API secret whose `dest` names
the shop. The shop is the token's: the body's `shop` is optional, and one that differs from
the token's is refused (403). No token, or an invalid one, is a 401 naming the reason; an app
without `shopify.api_key` and `shopify.api_secret` cannot check tokens and answers 503.

The order must be one the token's buyer placed (its `sub` customer, or the post-purchase
purchase's customer): another customer's order answers exactly as an order that does not
exist (404), and nothing changes. Requests are rate-limited per client address (before the
token is read) and per token: 429 with `Retry-After`.

Extensions run sandboxed, from an origin that is not the shop's, so every answer (errors
too) and the OPTIONS preflight carry `Access-Control-Allow-Origin: *`. That is safe: the
credential is the bearer token, never a cookie, and the browser sends no cookies to `*`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from flows.verification.customer_page import CustomerDesk
from providers.shopify.oauth import valid_shop_domain
from providers.shopify.session_token import SessionToken, SessionTokenError, read_session_token
from web.api.shops import read_json, unprocessable
from web.errors import ApiError, field_problem, json_error
from web.keys import clock_key, customer_desk_key, rate_limiter_key, settings_key

VERIFY_PATH = "/api/otp/verify"
RESEND_PATH = "/api/otp/resend"
_CODE = re.compile(r"[0-9]{4,8}")
_ORDER_MAX = 64  # Order.shopify_order_id and Order.name columns
_GID = "gid://shopify/"
_CORS = {
    hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
    hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST, OPTIONS",
    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Authorization, Content-Type",
}
_PREFLIGHT_MAX_AGE = "600"
# A buyer enters a code or asks again a few times; an address may front many buyers.
TOKEN_BURST, TOKEN_PER_SECOND = 10, 1 / 6
IP_BURST, IP_PER_SECOND = 60, 1.0

# (desk, session, order, code) -> the answer's body, or None when the buyer has no such order.
Act = Callable[[CustomerDesk, SessionToken, str, str], Awaitable[dict[str, Any] | None]]


class _Throttled(ApiError):
    def __init__(self, wait: float) -> None:
        super().__init__(429, "too many requests: try again later", "too_many_requests")
        self.retry_after = str(max(1, math.ceil(wait)))

    def response(self) -> web.Response:
        response = super().response()
        response.headers[hdrs.RETRY_AFTER] = self.retry_after
        return response


def setup_routes(app: web.Application) -> None:
    app.router.add_post(VERIFY_PATH, verify)
    app.router.add_post(RESEND_PATH, resend)
    app.router.add_route(hdrs.METH_OPTIONS, VERIFY_PATH, preflight)
    app.router.add_route(hdrs.METH_OPTIONS, RESEND_PATH, preflight)


async def verify(request: web.Request) -> web.Response:
    """`{order, code, shop?}` -> `{result, attempts_left}` (result: verified | wrong | locked |
    expired | already_verified | not_pending)."""
    return await _serve(request, _verify, need_code=True)


async def resend(request: web.Request) -> web.Response:
    """`{order, shop?}` -> `{result, retry_after}` (result: resent | too_early | resend_limit |
    already_verified | not_pending; retry_after in whole seconds)."""
    return await _serve(request, _resend, need_code=False)


async def preflight(request: web.Request) -> web.Response:
    response = _cors(web.Response(status=204))
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = _PREFLIGHT_MAX_AGE
    return response


async def _verify(
    desk: CustomerDesk, session: SessionToken, order: str, code: str
) -> dict[str, Any] | None:
    outcome = await desk.enter(session.shop, session.customer_id, order, code)
    if outcome is None:
        return None
    return {"result": outcome.result, "attempts_left": outcome.attempts_left}


async def _resend(
    desk: CustomerDesk, session: SessionToken, order: str, _code: str
) -> dict[str, Any] | None:
    outcome = await desk.resend(session.shop, session.customer_id, order)
    if outcome is None:
        return None
    return {"result": outcome.result, "retry_after": math.ceil(outcome.retry_after)}


async def _serve(request: web.Request, act: Act, need_code: bool) -> web.Response:
    try:
        await _throttle(request, f"otp:ip:{request.remote or ''}", IP_PER_SECOND, IP_BURST)
        session, token = _authenticated(request)
        digest = hashlib.sha256(token.encode()).hexdigest()[:32]
        await _throttle(request, f"otp:token:{digest}", TOKEN_PER_SECOND, TOKEN_BURST)
        shop = session.shop
        document = await read_json(request)
        if not isinstance(document, dict):
            raise unprocessable([field_problem("body", "must be a JSON object")])
        named, order, code, problems = _fields(document, need_code)
        if problems:
            raise unprocessable(problems)
        if named and named != shop:
            raise ApiError(403, f"the session token is for {shop}, not {named}", "forbidden")
        body = await act(request.app[customer_desk_key], session, order, code)
        if body is None:
            # The same answer for an order that does not exist and for another buyer's.
            raise ApiError(404, f"shop {shop} has no such order to verify", "not_found")
        response = web.json_response(body)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:  # e.g. 413 while reading the body
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
    if response.status == 401:
        response.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
    return _cors(response)


async def _throttle(request: web.Request, key: str, per_second: float, burst: int) -> None:
    wait = await request.app[rate_limiter_key].try_acquire(key, per_second, burst)
    if wait > 0:
        raise _Throttled(wait)


def _authenticated(request: web.Request) -> tuple[SessionToken, str]:
    """(the session token read, the token as sent); ApiError 503, or 401 naming why."""
    shopify = request.app[settings_key].shopify
    api_key, api_secret = shopify.api_key, shopify.api_secret.get_secret_value()
    needed = {"shopify.api_key": api_key, "shopify.api_secret": api_secret}
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise ApiError(
            503,
            f"cannot verify Shopify session tokens: {' and '.join(missing)} not configured",
            "not_configured",
        )
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "an Authorization: Bearer <Shopify session token> header is required",
            "unauthorized",
        )
    try:
        now = request.app[clock_key].now()
        return read_session_token(token, api_key=api_key, api_secret=api_secret, now=now), token
    except SessionTokenError as exc:
        raise ApiError(401, f"invalid session token: {exc}", "unauthorized") from None


def _fields(
    document: dict[str, Any], need_code: bool
) -> tuple[str, str, str, list[dict[str, str]]]:
    """(shop, order, code, problems): shop is "" when the body names none."""
    problems = []
    shop = document.get("shop")
    if shop is None:
        shop = ""
    elif isinstance(shop, str) and valid_shop_domain(shop.strip().lower()):
        shop = shop.strip().lower()
    else:
        rule = "must be the shop's myshopify.com domain, e.g. example.myshopify.com"
        problems.append(field_problem("shop", rule))
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


def _cors(response: web.Response) -> web.Response:
    response.headers.update(_CORS)
    return response
