"""Admin API handlers for shops: create (platform admin), status and settings (the shop's key)."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema, field_validator

from flows.shops import config as shop_config
from flows.shops import onboarding
from flows.shops.settings import FieldProblem, SettingsError
from storage.models import Shop
from web.api.auth import require_admin, require_shop
from web.errors import ApiError, field_problem
from web.keys import accounts_key, clock_key, db_key, queue_key, secret_box_key

# A shop's *.myshopify.com domain in any letter case (stored lowercase), as the document says.
DOMAIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*\.[Mm][Yy][Ss][Hh][Oo][Pp][Ii][Ff][Yy]\.[Cc][Oo][Mm]$"


class CreateShop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Annotated[str, WithJsonSchema({"type": "string", "pattern": DOMAIN_PATTERN})]
    access_token: str | None = None

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
    app = request.app
    try:
        issued = await onboarding.create_shop(
            app[db_key],
            app[queue_key],
            app[secret_box_key],
            app[clock_key],
            body.domain,
            body.access_token,
        )
    except onboarding.ShopExists:
        raise ApiError(409, f"shop {body.domain} already exists", "exists") from None
    return web.json_response(
        {
            "shop": {"id": issued.shop_id, "domain": issued.domain, "status": issued.status},
            "api_key": issued.api_key,
            "bot_link_code": issued.bot_link_code,
        },
        status=201,
    )


async def status(request: web.Request) -> web.Response:
    shop = await require_shop(request)
    async with request.app[db_key].sessions() as session:
        problems = await shop_config.problems(session, shop, request.app[secret_box_key])
    return web.json_response(_status_body(shop, problems))


def _status_body(shop: Shop, problems: list[FieldProblem]) -> dict[str, Any]:
    return {
        "domain": shop.domain,
        "name": shop.name,
        "status": shop.status,
        "missing": [p.field for p in problems],
        "problems": [{"field": p.field, "message": p.message} for p in problems],
        "currency": shop.currency,
        "timezone": shop.timezone,
        "country": shop.country,
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
    try:
        saved = await shop_config.save(
            app[db_key], app[secret_box_key], app[clock_key], shop.id, document, count
        )
    except SettingsError as exc:
        raise unprocessable([field_problem(p.field, p.message) for p in exc.problems]) from None
    return web.json_response(saved.document())
