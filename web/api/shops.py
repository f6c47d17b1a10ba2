"""Admin API handlers for shops: create (platform admin), status and settings (the shop's key)."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from flows.notifications import choices
from flows.shops import config as shop_config
from flows.shops import onboarding
from flows.shops.settings import FieldProblem, SettingsError
from providers.base import ProviderError
from storage.models import Shop
from web.api.auth import require_admin, require_shop
from web.api.whatsapp_notices import provider_unavailable, refusal, whatsapp_notices
from web.errors import ApiError, field_problem
from web.keys import accounts_key, clock_key, db_key, queue_key, secret_box_key
from web.shopify import webhook_secrets_key

# A shop's *.myshopify.com domain in any letter case (stored lowercase), as the document says.
DOMAIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*\.[Mm][Yy][Ss][Hh][Oo][Pp][Ii][Ff][Yy]\.[Cc][Oo][Mm]$"


class CreateShop(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # A custom app's secret comes with that app's token.
        json_schema_extra={
            "if": {"properties": {"api_secret": {"type": "string"}}, "required": ["api_secret"]},
            "then": {
                "properties": {"access_token": {"type": "string", "minLength": 1}},
                "required": ["access_token"],
            },
        },
    )

    domain: Annotated[str, WithJsonSchema({"type": "string", "pattern": DOMAIN_PATTERN})]
    access_token: str | None = Field(
        None, description="a custom app's Admin API access token: the shop connects with it"
    )
    api_secret: Annotated[
        str | None,
        WithJsonSchema({"type": ["string", "null"], "pattern": r"\S"}),
    ] = Field(
        None,
        description="that custom app's API secret key, which signs the shop's webhooks; "
        "without it they are refused and orders arrive only by reconciliation",
    )

    @field_validator("api_secret")
    @classmethod
    def _api_secret(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value if value is None else value.strip()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not re.fullmatch(DOMAIN_PATTERN, value):
            raise ValueError("must be a *.myshopify.com domain")
        return value.lower()


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, LookupError, RecursionError):  # also an unknown charset, deep nesting
        problem = field_problem("body", "must be JSON")
        raise ApiError(400, "the body must be JSON", "bad_body", fields=[problem]) from None


def unprocessable(problems: list[dict[str, str]]) -> ApiError:
    return ApiError(422, "the request is invalid", "invalid", fields=problems)


async def create(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        body = CreateShop.model_validate(await read_json(request))
    except ValidationError as exc:
        raise unprocessable(
            [field_problem(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors()]
        ) from None
    if body.api_secret and not body.access_token:
        raise unprocessable(
            [field_problem("api_secret", "is given with access_token, the custom app's token")]
        )
    access = None
    if body.access_token:
        access = onboarding.ShopifyAccess(body.access_token, app_secret=body.api_secret or "")
    app = request.app
    try:
        issued = await onboarding.create_shop(
            app[db_key], app[queue_key], app[secret_box_key], app[clock_key], body.domain, access
        )
    except onboarding.ShopExists:
        raise ApiError(409, f"shop {body.domain} already exists", "exists") from None
    app[webhook_secrets_key].forget()
    return web.json_response(
        {
            "shop": {
                "id": issued.shop_id,
                "domain": issued.domain,
                "status": issued.status,
                "webhooks": issued.webhooks,
            },
            "api_key": issued.api_key,
            "bot_link_code": issued.bot_link_code,
        },
        status=201,
    )


async def status(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    box = request.app[secret_box_key]
    async with request.app[db_key].sessions() as session:
        problems = await shop_config.problems(session, shop, box)
    return web.json_response(_status_body(shop, problems, onboarding.webhook_signing(shop, box)))


def _status_body(shop: Shop, problems: list[FieldProblem], signing: str) -> dict[str, Any]:
    signed_by = None if signing == onboarding.RECONCILIATION_ONLY else signing
    return {
        "domain": shop.domain,
        "name": shop.name,
        "status": shop.status,
        "missing": [p.field for p in problems],
        "problems": [{"field": p.field, "message": p.message} for p in problems],
        "currency": shop.currency,
        "timezone": shop.timezone,
        "country": shop.country,
        "webhooks": {"signed_by": signed_by, "message": onboarding.SIGNING_MESSAGES[signing]},
    }


async def get_settings(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    return web.json_response(shop_config.stored(shop).document())


async def put_settings(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    document = await read_json(request)
    if not isinstance(document, dict):
        raise unprocessable([field_problem("body", "must be a JSON object")])
    app = request.app
    desk = app[accounts_key]
    count = None if desk is None else functools.partial(desk.template_variables, shop.id)
    if desk is not None:
        await _check_whatsapp(request, shop, document)
    try:
        saved = await shop_config.save(
            app[db_key], app[secret_box_key], app[clock_key], shop.id, document, count
        )
    except SettingsError as exc:
        raise unprocessable([field_problem(p.field, p.message) for p in exc.problems]) from None
    return web.json_response(saved.document())


async def _check_whatsapp(request: web.Request, shop: Shop, document: dict[str, Any]) -> None:
    """A document that newly enables a WhatsApp notification: its template is checked live
    as `PUT /notifications/whatsapp/{event}` checks it (409 with the provider's status)."""
    try:
        await whatsapp_notices(request.app).check_document(shop.id, document)
    except choices.Refused as refused:
        raise refusal(refused, refused.document_field()) from None
    except ProviderError as exc:
        raise provider_unavailable(exc) from None
