"""Twilio's callbacks: inbound messages, message statuses, and the verification call's IVR.

Every request must carry a valid `X-Twilio-Signature` for the public URL, made with the auth
token of the account its `AccountSid` names (403 otherwise, nothing recorded). A shop's own
account speaks only for that shop: its events and IVR turns reach that shop's records alone.
Events go through the inbox like every webhook. The IVR turns answer TwiML at once: the
question, then the customer's key recorded as an event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select

from flows.channels.accounts import own_secrets
from flows.shops import config as shop_config
from flows.verification.ivr import script
from providers import twilio
from providers.events import Event, KeypadInput
from storage.models import Call, Order, Shop
from web.errors import ApiError, bad_callback, field_problem
from web.inbound import accept_event
from web.keys import db_key, secret_box_key, settings_key

_LOGGER = logging.getLogger(__name__)
EMPTY_TWIML = "<?xml version='1.0' encoding='UTF-8'?><Response />"
_BODY = field_problem("body", "must be a UTF-8 form")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


def _twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/xml")


@dataclass(frozen=True)
class _Signed:
    form: Mapping[str, str]
    shop_id: int | None  # the shop whose own account signed; None: the platform's account


async def _signed_form(request: web.Request) -> _Signed:
    """The posted form, if Twilio signed it for our public URL with the auth token of the
    account it names (the platform's, or a shop's own); else 403 (400 for a body that is
    no form)."""
    settings = request.app[settings_key]
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(
            415, "the body must be a form (application/x-www-form-urlencoded)", fields=[_BODY]
        )
    try:
        posted = await request.post()
    except (ValueError, LookupError):  # broken UTF-8, an unknown charset
        raise ApiError(
            400, "the body is not a readable form", "bad_callback", fields=[_BODY]
        ) from None
    form = {key: str(value) for key, value in posted.items()}
    url = settings.server.public_url + request.path_qs
    signature = request.headers.get("X-Twilio-Signature")
    signers = {
        shop_id
        for shop_id, token in await _auth_tokens(request, form.get("AccountSid", ""))
        if twilio.verify_signature(url, form, signature, token)
    }
    if not signers:
        raise web.HTTPForbidden(reason="bad or missing X-Twilio-Signature")
    # One Twilio account connected by several shops speaks for them all, as a platform does.
    return _Signed(form, signers.pop() if len(signers) == 1 else None)


async def _auth_tokens(request: web.Request, account_sid: str) -> list[tuple[int | None, str]]:
    """(shop, auth token) of each account `account_sid` may name; shop None: the platform."""
    platform = request.app[settings_key].providers.twilio
    if account_sid and account_sid == platform.account_sid:
        return [(None, platform.auth_token.get_secret_value())]
    if not _ACCOUNT_SID.fullmatch(account_sid):  # unsigned yet: not worth a query
        return []
    owners = await own_secrets(
        request.app[db_key], request.app[secret_box_key], "twilio", account_sid
    )
    return [(shop_id, secrets.get("auth_token", "")) for shop_id, secrets in owners]


async def _parsed(request: web.Request, parse) -> tuple[Event, int | None] | web.Response:
    signed = await _signed_form(request)
    try:
        return parse(signed.form), signed.shop_id
    except ValueError as exc:
        return bad_callback(exc)


async def inbound_message(request: web.Request) -> web.Response:
    parsed = await _parsed(request, twilio.parse_inbound_message)
    if isinstance(parsed, web.Response):
        return parsed
    await accept_event(request, *parsed)
    return _twiml(EMPTY_TWIML)


async def message_status(request: web.Request) -> web.Response:
    parsed = await _parsed(request, twilio.parse_message_status)
    if isinstance(parsed, web.Response):
        return parsed
    await accept_event(request, *parsed)
    return web.Response(status=204)


async def call_status(request: web.Request) -> web.Response:
    parsed = await _parsed(request, twilio.parse_call_status)
    if isinstance(parsed, web.Response):
        return parsed
    await accept_event(request, *parsed)
    return web.Response(status=204)


async def _call_script(request: web.Request, call_sid: str, shop_id: int | None):
    query = (
        select(Call, Order, Shop)
        .join(Order, Call.order_id == Order.id)
        .join(Shop, Call.shop_id == Shop.id)
        .where(Call.provider == "twilio", Call.provider_call_id == call_sid)
    )
    if shop_id is not None:
        query = query.where(Call.shop_id == shop_id)
    async with request.app[db_key].sessions() as session:
        found = (await session.execute(query)).first()
    if found is None:
        return None
    _call, order, shop = found
    return script(shop, order, shop_config.load(shop))


def _gather_url(request: web.Request, attempt: int) -> str:
    return (
        f"{request.app[settings_key].server.public_url}/webhooks/twilio/voice/gather?try={attempt}"
    )


async def voice(request: web.Request) -> web.Response:
    signed = await _signed_form(request)
    try:
        call_sid = twilio.parse_voice(signed.form)
    except ValueError as exc:
        return bad_callback(exc)
    ivr = await _call_script(request, call_sid, signed.shop_id)
    if ivr is None:
        _LOGGER.warning("voice webhook for a call we did not place: %s", call_sid)
        return _twiml(twilio.ivr_goodbye("", language="en"))
    return _twiml(
        twilio.ivr_prompt(ivr.prompt, language=ivr.language, action_url=_gather_url(request, 1))
    )


async def gather(request: web.Request) -> web.Response:
    signed = await _signed_form(request)
    try:
        event = twilio.parse_gather(signed.form)
    except ValueError as exc:
        return bad_callback(exc)
    ivr = await _call_script(request, event.call_id, signed.shop_id)
    if ivr is None:
        return _twiml(twilio.ivr_goodbye("", language="en"))
    if event.digits in ivr.keys:
        await accept_event(request, event, signed.shop_id)
        return _twiml(twilio.ivr_goodbye(ivr.thanks, language=ivr.language))
    if request.query.get("try") == "1":
        return _twiml(
            twilio.ivr_prompt(
                ivr.prompt, language=ivr.language, action_url=_gather_url(request, 2)
            )
        )
    no_input = KeypadInput(event.provider, event.call_id, "", event.reference)
    await accept_event(request, no_input, signed.shop_id)
    return _twiml(twilio.ivr_goodbye(ivr.no_input, language=ivr.language))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/messages", inbound_message)
    app.router.add_post("/webhooks/twilio/status", message_status)
    app.router.add_post("/webhooks/twilio/voice", voice)
    app.router.add_post("/webhooks/twilio/voice/gather", gather)
    app.router.add_post("/webhooks/twilio/voice/status", call_status)
