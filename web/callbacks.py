"""Callbacks of the providers that sign nothing (Exotel, Gupshup: a per-shop secret token in
the path, wrong token -> 404; Exotel's include customers' SMS to the shop's number) and of
RingCentral (subscription handshake and verification token: the platform's subscription, or
a shop account's at `?account={id}` with its own token, whose events stay in that shop).
Every event goes through the inbox; nothing here waits on an outside call."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from flows.channels.accounts import shop_of_account
from flows.channels.callback_urls import PLATFORM, ringcentral_token, shop_from_token
from providers import exotel, gupshup, ringcentral
from web.errors import bad_callback, json_error
from web.inbound import accept_event
from web.keys import db_key, settings_key

_LOGGER = logging.getLogger(__name__)


def _shop(request: web.Request) -> int | None:
    """The shop of the path's token (None for the platform's); 404 for a forged token."""
    shop_id = shop_from_token(request.app[settings_key].secret_keys(), request.match_info["token"])
    if shop_id is None:
        raise web.HTTPNotFound()
    return None if shop_id == PLATFORM else shop_id


async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form or JSON parameters: Exotel uses all three. ValueError for a body that is
    none of them."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST":
        if request.content_type == "application/json":
            body = await _json(request)
            if not isinstance(body, dict):
                raise ValueError("body: must be a JSON object")
            params |= body
        else:
            try:
                form = await request.post()
            except (ValueError, LookupError):
                raise ValueError("body: not a readable form") from None
            params |= {key: str(value) for key, value in form.items()}
    return params


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, LookupError):  # not JSON, broken UTF-8, an unknown charset
        raise ValueError("body: not JSON") from None


async def _exotel(request: web.Request, parse: Any) -> web.Response:
    shop_id = _shop(request)
    try:
        event = parse(await _params(request))
    except ValueError as exc:
        return bad_callback(exc)
    await accept_event(request, event, shop_id)
    return web.Response(text="OK")


async def exotel_passthru(request: web.Request) -> web.Response:
    return await _exotel(request, exotel.parse_passthru)


async def exotel_call_status(request: web.Request) -> web.Response:
    return await _exotel(request, exotel.parse_call_status)


async def exotel_sms_status(request: web.Request) -> web.Response:
    return await _exotel(request, exotel.parse_sms_status)


async def exotel_sms(request: web.Request) -> web.Response:
    """A customer's SMS to the shop's Exotel number. The answer is text/plain and empty: an
    SMS app's "Send a Reply" applet would send a body back to the customer (the flows answer
    through the outbox instead), and it checks the content type with a HEAD first."""
    if request.method == "HEAD":
        _shop(request)
        return web.Response(content_type="text/plain")
    shop_id = _shop(request)
    try:
        event = exotel.parse_inbound_sms(await _params(request))
    except ValueError as exc:
        return bad_callback(exc)
    await accept_event(request, event, shop_id)
    return web.Response(content_type="text/plain")


async def gupshup_callback(request: web.Request) -> web.Response:
    shop_id = _shop(request)
    try:
        body = await _json(request)
        events = gupshup.parse_callback(body if isinstance(body, dict) else {})
    except ValueError as exc:
        return bad_callback(exc)
    for event in events:
        await accept_event(request, event, shop_id)
    return web.Response(status=200)


async def ringcentral_callback(request: web.Request) -> web.Response:
    handshake = ringcentral.validation_token(request.headers)
    if handshake and not await request.read():
        # Subscription creation: echo the token, nothing else (RingCentral checks the size).
        return web.Response(
            status=200,
            headers={"Validation-Token": handshake, "Content-Type": "application/json"},
        )
    raw = request.query.get("account", str(PLATFORM))
    account_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    keys = request.app[settings_key].secret_keys()
    if account_id is None or not any(
        ringcentral.verify_delivery(request.headers, ringcentral_token(k, account_id))
        for k in keys
    ):
        return json_error(403, "missing or wrong verification token", "bad_signature")
    shop_id = None
    if account_id != PLATFORM:
        shop_id = await shop_of_account(request.app[db_key], account_id)
        if shop_id is None:  # removed since: its subscription lapses
            return web.Response(status=200)
    try:
        body = await _json(request)
        events = ringcentral.parse_notification(body if isinstance(body, dict) else {})
    except ValueError as exc:
        # Refusals count towards RingCentral blacklisting the webhook: log and drop instead.
        _LOGGER.warning("ringcentral notification dropped: %s", exc)
        return web.Response(status=200)
    for event in events:
        await accept_event(request, event, shop_id)
    return web.Response(status=200)


def setup_routes(app: web.Application) -> None:
    for kind, handler in (
        ("passthru", exotel_passthru),
        ("call-status", exotel_call_status),
        ("sms-status", exotel_sms_status),
    ):
        app.router.add_route("GET", f"/webhooks/exotel/{{token}}/{kind}", handler)
        app.router.add_route("POST", f"/webhooks/exotel/{{token}}/{kind}", handler)
    for method in ("HEAD", "GET", "POST"):
        app.router.add_route(method, "/webhooks/exotel/{token}/sms", exotel_sms)
    app.router.add_post("/webhooks/gupshup/{token}", gupshup_callback)
    app.router.add_post("/webhooks/ringcentral", ringcentral_callback)
