"""The admin API's OpenAPI 3.1 document, built from the same pydantic models that validate."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from flows.shop_settings import ShopSettings
from web.api.shops import CreateShop

REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ShopSettings, CreateShop):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    }
    schemas["ShopStatus"] = {
        "type": "object",
        "properties": {
            "domain": {"type": "string"},
            "name": {"type": "string"},
            "status": {"enum": ["partially_installed", "installed", "uninstalled"]},
            "missing": {"type": "array", "items": {"type": "string"}},
            "currency": {"type": "string"},
            "timezone": {"type": "string"},
            "country": {"type": "string"},
        },
    }
    schemas["CreatedShop"] = {
        "type": "object",
        "properties": {
            "shop": {"type": "object"},
            "api_key": {"type": "string", "description": "shown once; stored hashed"},
            "bot_link_code": {"type": "string", "description": "one-time, 24 h"},
        },
    }
    return schemas


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", **_json("Error")} for s in statuses}


@cache
def build() -> dict[str, Any]:
    shop_auth = [{"shopKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "ordertalk admin API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "shopKey": {"type": "http", "scheme": "bearer", "description": "a shop's API key"},
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the platform's security.admin_token",
                },
            },
        },
        "paths": {
            "/shops": {
                "post": {
                    "summary": "Create a shop (platform admin)",
                    "security": [{"adminToken": []}],
                    "requestBody": {"required": True, **_json("CreateShop")},
                    "responses": {
                        "201": {"description": "created", **_json("CreatedShop")},
                        **_errors(400, 401, 403, 409, 422),
                    },
                }
            },
            "/shop/status": {
                "get": {
                    "summary": "The shop's installation status and what is missing",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "status", **_json("ShopStatus")},
                        **_errors(401),
                    },
                }
            },
            "/shop/settings": {
                "get": {
                    "summary": "The shop's settings document (secrets masked)",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "settings", **_json("ShopSettings")},
                        **_errors(401),
                    },
                },
                "put": {
                    "summary": "Replace the whole settings document (invalid: 422, nothing saved)",
                    "security": shop_auth,
                    "requestBody": {"required": True, **_json("ShopSettings")},
                    "responses": {
                        "200": {"description": "saved", **_json("ShopSettings")},
                        **_errors(400, 401, 422),
                    },
                },
            },
        },
    }


async def document(request: web.Request) -> web.Response:
    return web.json_response(build())
