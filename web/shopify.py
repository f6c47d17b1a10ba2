"""Shopify's HTTP surface: the webhook endpoint and the OAuth install round trip.

Webhooks are verified over the raw body, stored with their receipt and job in the inbox's
group commit, and answered; nothing here waits on an outside call. The OAuth callback is the
one place that calls Shopify inline (the merchant's browser is waiting for the token).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from aiohttp import hdrs, web

from flows.shops import onboarding
from flows.shops.shopify_events import WEBHOOK_JOB
from flows.shops.webhook_secrets import WebhookSecrets
from providers.base import ProviderError
from providers.shopify.oauth import (
    authorize_url,
    exchange_code,
    valid_shop_domain,
    verify_query_hmac,
)
from providers.shopify.webhooks import (
    HMAC_HEADER,
    PRIVACY_TOPICS,
    SHOP_HEADER,
    SUBSCRIBED_TOPICS,
    parse_delivery,
    verify_webhook,
)
from storage.inbox import Accepted, Delivery
from web.errors import RETRY_AFTER_SECONDS, json_error
from web.keys import (
    clock_key,
    db_key,
    http_key,
    inbox_key,
    queue_key,
    secret_box_key,
    settings_key,
)

_LOGGER = logging.getLogger(__name__)
STATE_COOKIE = "ordertalk_oauth_state"
SCOPES = "read_orders,write_orders,read_customers,write_customers,read_returns"
# The webhook's answers, encoded once (json_response would encode one per request).
_ANSWERS = {result: json.dumps({"status": result.value}).encode() for result in Accepted}
# The custom apps' secrets that sign some shops' webhooks.
webhook_secrets_key = web.AppKey("webhook_secrets", WebhookSecrets)


async def _signed(request: web.Request, body: bytes) -> bool:
    """Signed by the named shop's custom app, or by the platform's app."""
    signature = request.headers.get(HMAC_HEADER)
    platform = request.app[settings_key].shopify.api_secret.get_secret_value()
    domain = request.headers.get(SHOP_HEADER, "").strip().lower()
    secrets = request.app[webhook_secrets_key]
    own = await secrets.secret(domain)
    if verify_webhook(body, signature, own) or verify_webhook(body, signature, platform):
        return True
    # The shop's secret may have been stored a moment ago by another process.
    fresh = await secrets.secret(domain, fresh=True)
    return fresh != own and verify_webhook(body, signature, fresh)


async def webhook(request: web.Request) -> web.Response:
    body = await request.read()
    if not await _signed(request, body):
        return json_error(401, "missing or wrong X-Shopify-Hmac-Sha256", "bad_signature")
    try:
        delivery = parse_delivery(request.headers)
    except ValueError as exc:
        return json_error(400, str(exc), "bad_headers")
    if delivery.topic not in SUBSCRIBED_TOPICS and delivery.topic not in PRIVACY_TOPICS:
        _LOGGER.info("shopify webhook %s from %s ignored", delivery.topic, delivery.shop_domain)
        return web.json_response({"status": "ignored"})
    # Shopify signed this body, so it is Shopify's JSON: the job parses it (and records a
    # malformed one); here a cheap check is enough, which keeps the intake fast.
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return json_error(400, "body is not UTF-8 JSON", "bad_body")
    if not text.lstrip().startswith("{"):
        return json_error(400, "body is not a JSON object", "bad_body")
    triggered = delivery.triggered_at.isoformat() if delivery.triggered_at else None
    accepted = Delivery(
        provider="shopify",
        shop_domain=delivery.shop_domain,
        delivery_id=delivery.webhook_id,
        event_id=delivery.event_id,
        topic=delivery.topic,
        triggered_at=delivery.triggered_at,
        job_kind=WEBHOOK_JOB,
        # The raw body, not the parsed object: encoding a string back is much cheaper.
        job_payload={"topic": delivery.topic, "body": text, "triggered_at": triggered},
        allow_unknown_shop=delivery.topic in PRIVACY_TOPICS,
    )
    try:
        result = await request.app[inbox_key].accept(accepted)
    except Exception:
        _LOGGER.exception("shopify webhook not stored; Shopify will retry")
        response = json_error(503, "temporarily unable to store the webhook")
        response.headers[hdrs.RETRY_AFTER] = RETRY_AFTER_SECONDS
        return response
    if result is Accepted.UNKNOWN_SHOP:
        _LOGGER.warning(
            "shopify webhook %s for unknown shop %s", delivery.topic, delivery.shop_domain
        )
    return web.Response(body=_ANSWERS[result], content_type="application/json", charset="utf-8")


async def install(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    shop = request.query.get("shop", "").lower()
    if not valid_shop_domain(shop):
        return json_error(400, "shop must be a *.myshopify.com domain", "bad_shop")
    state = secrets.token_urlsafe(24)
    url = authorize_url(
        settings.shopify.admin_url,
        shop,
        settings.shopify.api_key,
        SCOPES,
        f"{settings.server.public_url}/shopify/callback",
        state,
    )
    response = web.HTTPFound(url)
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=600,
        httponly=True,
        samesite="Lax",
        secure=settings.server.public_url.startswith("https://"),
    )
    return response


async def callback(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    query = request.query
    secret = settings.shopify.api_secret.get_secret_value()
    shop = query.get("shop", "").lower()
    if not verify_query_hmac(query, secret):
        return json_error(403, "the request is not signed by Shopify", "bad_signature")
    if not secrets.compare_digest(query.get("state", ""), request.cookies.get(STATE_COOKIE, "")):
        return json_error(403, "state does not match this browser's install", "bad_state")
    if not valid_shop_domain(shop) or not query.get("code"):
        return json_error(400, "shop and code are required", "bad_request")
    try:
        grant = await exchange_code(
            request.app[http_key],
            settings.shopify.admin_url,
            shop,
            settings.shopify.api_key,
            secret,
            query["code"],
        )
    except ProviderError as exc:
        _LOGGER.warning("shopify token exchange for %s failed: %s", shop, exc)
        return json_error(502, "Shopify did not grant access; try installing again", "no_grant")
    issued = await onboarding.connect_with_token(
        request.app[db_key],
        request.app[queue_key],
        request.app[secret_box_key],
        request.app[clock_key],
        shop,
        onboarding.ShopifyAccess(grant.access_token, custom_app=False),
    )
    request.app[webhook_secrets_key].forget()
    # It shows the shop's new API key: no browser history, cache or proxy may keep it.
    response = web.json_response(_issued_body(issued), headers={"Cache-Control": "no-store"})
    response.del_cookie(STATE_COOKIE)
    return response


def _issued_body(issued: onboarding.Connected) -> dict[str, Any]:
    body: dict[str, Any] = {"shop": issued.domain, "status": issued.status}
    if issued.api_key:
        body |= {"api_key": issued.api_key, "bot_link_code": issued.bot_link_code}
    return body


def setup_routes(app: web.Application) -> None:
    app[webhook_secrets_key] = WebhookSecrets(app[db_key], app[secret_box_key])
    app.router.add_post("/webhooks/shopify", webhook)
    app.router.add_get("/shopify/install", install)
    app.router.add_get("/shopify/callback", callback)
