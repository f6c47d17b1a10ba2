"""The WhatsApp notifications use case as the admin API's handlers use it (the notification's
own route and the settings document's): built on the app's resources, its refusals as JSON
errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flows.channels.routing import ProviderRouter
from flows.notifications import choices
from providers.base import ProviderError
from web.errors import ApiError, field_problem
from web.keys import accounts_key, clock_key, db_key, secret_box_key, settings_key


def whatsapp_notices(app: web.Application) -> choices.WhatsAppNotices:
    desk = app[accounts_key]
    router = ProviderRouter(app[settings_key], desk.box, desk.urls, desk.clients, desk.offers)
    return choices.WhatsAppNotices(app[db_key], app[secret_box_key], app[clock_key], router)


def refusal(refused: choices.Refused, field: str) -> ApiError:
    """409 (422 for a value the choice lacks or the model refuses), naming `field`."""
    fields = [field_problem(field, refused.message)] if field else []
    if refused.code in (choices.INVALID, choices.REQUIRED):
        return ApiError(422, "the request is invalid", "invalid", fields=fields)
    details: dict[str, Any] = {"fields": fields} if fields else {}
    if refused.provider_status:
        details["provider_status"] = refused.provider_status
    return ApiError(409, refused.message, refused.code, **details)


def provider_unavailable(exc: ProviderError) -> ApiError:
    return ApiError(
        503, f"the WhatsApp provider did not answer ({exc}): try again", "provider_unavailable"
    )
