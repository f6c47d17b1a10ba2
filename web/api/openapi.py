"""The admin API's OpenAPI 3.1 document, built from the same pydantic models that validate."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from flows.channels.accounts import (
    CHANNELS,
    PROVIDERS,
    ExotelAccount,
    GupshupAccount,
    PlatformAccount,
    RingCentralAccount,
    TwilioAccount,
)
from flows.notifications.events import EVENTS
from flows.orders import reports
from flows.shops.settings import ShopSettings
from web.api.conversations import PHONE_PATTERN, ConsentChange, ThreadReply
from web.api.notifications import PreviewRequest, WhatsAppChoice
from web.api.orders import CancelOrder, RefundOrder
from web.api.shops import CreateShop

ACCOUNT_INPUTS = (
    TwilioAccount,
    ExotelAccount,
    GupshupAccount,
    RingCentralAccount,
    PlatformAccount,
)

REF = "#/components/schemas/{model}"
_DATE_OR_TIME = {
    "anyOf": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "maxLength": 0},
    ]
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    models = (
        ShopSettings,
        CreateShop,
        ConsentChange,
        ThreadReply,
        CancelOrder,
        RefundOrder,
        PreviewRequest,
        WhatsAppChoice,
    )
    for model in (*models, *ACCOUNT_INPUTS):
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
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "currency": {"type": "string"},
            "timezone": {"type": "string"},
            "country": {"type": "string"},
            "webhooks": {
                "type": "object",
                "description": "how the shop's webhooks are verified; signed_by null: a custom "
                "app's token was given without its API secret key, so they are refused and "
                "orders arrive only by the 15-minute reconciliation",
                "properties": {
                    "signed_by": {"enum": ["platform_app", "custom_app", None]},
                    "message": {"type": "string"},
                },
            },
        },
    }
    schemas["CreatedShop"] = {
        "type": "object",
        "properties": {
            "shop": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "domain": {"type": "string"},
                    "status": {"type": "string"},
                    "webhooks": {
                        "enum": ["platform_app", "custom_app", "reconciliation_only"],
                        "description": "reconciliation_only: a custom app's token without its "
                        "API secret key; its webhooks are refused",
                    },
                },
            },
            "api_key": {"type": "string", "description": "shown once; stored hashed"},
            "bot_link_code": {"type": "string", "description": "one-time, 24 h"},
        },
    }
    schemas["OrderActionResult"] = {
        "type": "object",
        "properties": {
            "cancelled": {"type": "boolean"},
            "refunded": {"type": "boolean"},
            "reason": {"type": "string"},
            "amount": {"type": ["string", "null"]},
            "currency": {"type": "string"},
            "line_items": {
                "type": "array",
                "description": "the lines a partial refund covers",
                "items": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}, "quantity": {"type": "integer"}},
                },
            },
            "financial_status": {
                "type": "string",
                "description": "as Shopify reports it after the action (partially_refunded ...)",
            },
        },
    }
    schemas.update(_report_schemas())
    schemas.update(_notification_schemas())
    schemas.update(_account_schemas())
    schemas.update(_privacy_schemas())
    schemas.update(_conversation_schemas())
    return schemas


def _conversation_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    moment = {"type": "string", "format": "date-time"}
    nullable_moment = {"type": ["string", "null"], "format": "date-time"}
    channel = {
        "type": "object",
        "properties": {
            "state": {"enum": ["opted_in", "opted_out", "unknown"]},
            "source": {
                "type": ["string", "null"],
                "description": "keyword, shopify, merchant, api or checkout; null when unknown",
            },
            "updated_at": nullable_moment,
            "history": {
                "type": "array",
                "description": "every change, newest first",
                "items": {
                    "type": "object",
                    "properties": {
                        "state": {"enum": ["opted_in", "opted_out"]},
                        "source": text,
                        "reference": {
                            "type": "string",
                            "description": "what caused it, e.g. the keyword's message",
                        },
                        "created_at": moment,
                    },
                },
            },
        },
    }
    thread = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "phone": {"type": "string", "description": "the customer's phone, E.164"},
            "channel": {"enum": ["sms", "whatsapp"]},
            "status": {"enum": ["unanswered", "answered"]},
            "handed_over": {
                "type": "string",
                "description": "why a flow handed the customer over: not_understood, "
                "flagged: {phrase}; empty for a plain message",
            },
            "last_inbound_at": nullable_moment,
            "last_outbound_at": nullable_moment,
            "updated_at": moment,
            "url": text,
        },
    }
    message = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "direction": {"enum": ["inbound", "outbound"]},
            "channel": {"enum": ["sms", "whatsapp"]},
            "provider": text,
            "account": {"enum": ["shop", "platform"]},
            "body": text,
            "status": text,
            "created_at": moment,
        },
    }
    return {
        "CustomerConsent": {
            "type": "object",
            "properties": {
                "phone": text,
                "channels": {
                    "type": "object",
                    "properties": {"sms": channel, "whatsapp": channel},
                },
            },
        },
        "ThreadList": {
            "type": "object",
            "properties": {
                "threads": {
                    "type": "array",
                    "description": "latest activity first, at most 200",
                    "items": thread,
                }
            },
        },
        "ThreadMessages": {
            "type": "object",
            "properties": {
                "thread": thread,
                "messages": {"type": "array", "description": "oldest first", "items": message},
            },
        },
        "ThreadAnswer": {"type": "object", "properties": {"message": message}},
    }


def _privacy_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    nullable_text = {"type": ["string", "null"]}
    moment = {"type": "string", "format": "date-time"}
    listed = {"type": "array", "items": {"type": "object"}}
    requested = {
        "type": "object",
        "description": "whom the request named (Shopify customer id, email, phone in E.164)",
        "properties": {"id": text, "email": text, "phone": text},
    }
    return {
        "DataRequestList": {
            "type": "object",
            "properties": {
                "data_requests": {
                    "type": "array",
                    "description": "newest first",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "shopify_request_id": text,
                            "customer": requested,
                            "orders_requested": {"type": "array", "items": text},
                            "received_at": moment,
                            "url": text,
                        },
                    },
                }
            },
        },
        "DataRequestExport": {
            "type": "object",
            "description": "everything the product holds of the customer, for the merchant to "
            "pass on; erased with the customer's data by customers/redact",
            "properties": {
                "data_request": {
                    "type": "object",
                    "properties": {"id": text, "received_at": moment},
                },
                "shop": text,
                "requested": {
                    "type": "object",
                    "properties": {
                        "customer": requested,
                        "orders": {"type": "array", "items": text},
                    },
                },
                "customers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "shopify_customer_id": nullable_text,
                            "phone": text,
                            "name": text,
                            "email": text,
                            "sms_consent": text,
                            "whatsapp_consent": text,
                        },
                    },
                },
                "orders": {
                    "type": "array",
                    "description": "each with its items, verification and timeline",
                    "items": {"type": "object"},
                },
                "messages": listed,
                "calls": listed,
                "missed_calls": listed,
            },
        },
    }


def _account_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    moment = {"type": "string", "format": "date-time"}
    selection = {
        "type": ["object", "null"],
        "description": "null: no account can carry the channel; connect one",
        "properties": {
            "account_id": {"type": "integer"},
            "provider": {"enum": list(PROVIDERS)},
            "owner": {"enum": ["shop", "platform"]},
        },
    }
    account = {
        "type": "object",
        "description": "secrets are never shown",
        "properties": {
            "id": {"type": "integer"},
            "provider": {"enum": list(PROVIDERS)},
            "owner": {"enum": ["shop", "platform"]},
            "status": {"enum": ["active", "rejected"]},
            "status_reason": text,
            "channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
            "details": {"type": "object"},
            "connected_at": moment,
            "checked_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    channels = {"type": "object", "properties": dict.fromkeys(CHANNELS, selection)}
    problem = {"type": "object", "properties": {"field": text, "message": text}}
    return {
        "AccountInput": {
            "description": "a shop's own account (checked live with the provider before it is "
            "stored) or the platform's ({provider, platform: true})",
            "oneOf": [{"$ref": REF.format(model=m.__name__)} for m in ACCOUNT_INPUTS],
        },
        "Account": account,
        "AccountList": {
            "type": "object",
            "properties": {
                "accounts": {"type": "array", "items": account},
                "channels": channels,
                "platform": {
                    "type": "array",
                    "description": "the platform's accounts a shop may connect",
                    "items": {
                        "type": "object",
                        "properties": {
                            "provider": {"enum": list(PROVIDERS)},
                            "channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
                        },
                    },
                },
            },
        },
        "ChannelChoice": {
            "type": "object",
            "description": "the account id to carry each named channel",
            "properties": {channel: {"type": "integer"} for channel in CHANNELS},
            "additionalProperties": False,
            "minProperties": 1,
        },
        "Channels": {"type": "object", "properties": {"channels": channels}},
        "Setup": {
            "type": "object",
            "properties": {
                "status": {"enum": ["partially_installed", "installed", "uninstalled"]},
                "channels": channels,
                "accounts": {
                    "type": "array",
                    "items": {
                        "allOf": [account],
                        "properties": {
                            "paste": {
                                "type": "array",
                                "description": "what to paste where in the provider's console",
                                "items": {
                                    "type": "object",
                                    "properties": {"where": text, "value": text},
                                },
                            }
                        },
                    },
                },
                "paste": {
                    "type": "array",
                    "description": "what to paste where outside the providers' consoles (the "
                    "shipment webhook for the carrier or fulfilment platform)",
                    "items": {"type": "object", "properties": {"where": text, "value": text}},
                },
                "missing": {"type": "array", "items": problem},
                "warnings": {
                    "type": "array",
                    "description": "what keeps some messages from being delivered, though "
                    "the shop is installed (notification SMS without their DLT ids on Exotel)",
                    "items": problem,
                },
            },
        },
    }


def _notification_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    count = {"type": "integer", "minimum": 0}
    moment = {"type": "string", "format": "date-time"}
    line = {
        "type": "object",
        "required": ["provider", "account", "channel", "event", "messages", "credits"],
        "properties": {
            "provider": text,
            "account": {"type": "string", "description": "shop | platform"},
            "channel": {"type": "string", "enum": ["sms", "whatsapp"]},
            "event": {"type": "string", "description": "the journey event; empty: not one"},
            "messages": count,
            "credits": {**count, "description": "SMS: one per segment; WhatsApp: one"},
        },
    }
    sms = {
        "type": "object",
        "required": ["text", "encoding", "characters", "segments", "credits"],
        "properties": {
            "text": text,
            "unknown_tokens": {"type": "array", "items": text},
            "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
            "characters": count,
            "segments": count,
            "credits": count,
        },
    }
    variable = {
        "type": "object",
        "properties": {"variable": {"type": "integer"}, "token": text, "value": text},
    }
    whatsapp = {
        "type": "object",
        "required": ["template_id", "params"],
        "properties": {
            "template_id": text,
            "params": {"type": "array", "items": variable},
            "text": {"type": "string", "description": "the template's text, filled in"},
        },
    }
    return {
        "WhatsAppNotification": {
            "type": "object",
            "required": ["event", "whatsapp", "charge_accepted"],
            "properties": {
                "event": text,
                "whatsapp": {"$ref": REF.format(model="WhatsAppNotice")},
                "charge_accepted": {"type": "boolean"},
                "template": {
                    "type": "object",
                    "properties": {"status": text, "text": text, "preview": text},
                },
            },
        },
        "NotificationPreview": {"oneOf": [sms, whatsapp]},
        "ShipmentsWebhook": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "format": "uri"}},
        },
        "Billing": {
            "type": "object",
            "required": ["from", "to", "lines"],
            "properties": {
                "from": moment,
                "to": moment,
                "lines": {"type": "array", "items": line},
            },
        },
    }


def _report_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    moment = {"type": "string", "format": "date-time"}
    nullable_moment = {"type": ["string", "null"], "format": "date-time"}
    order_ref = {"$ref": REF.format(model="OrderRef")}
    cursor = {"type": ["string", "null"], "description": "null on the last page"}
    order: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": text,
            "number": {"type": "integer"},
            "placed_at": moment,
            "phone": {"type": "string", "description": "the customer's phone, E.164"},
            "total_amount": {"type": "string", "description": "a decimal"},
            "currency": text,
            "payment_method": {"enum": ["cod", "prepaid"]},
            "verification_status": text,
            "skip_reason": text,
            "tags": {"type": "array", "items": text},
            "url": text,
        },
    }
    call = {
        "type": "object",
        "properties": {
            "provider": text,
            "status": text,
            "direction": {"enum": ["outbound"]},
            "to_phone": text,
            "from_phone": {"type": "string", "description": "the number the call came from"},
            "attempt": {"type": "integer"},
            "input_digits": text,
            "duration_seconds": {"type": "integer"},
            "created_at": moment,
            "ended_at": nullable_moment,
            "order": {"oneOf": [order_ref, {"type": "null"}]},
        },
    }
    message = {
        "type": "object",
        "properties": {
            "channel": {"enum": ["sms", "whatsapp"]},
            "direction": {"enum": ["outbound", "inbound"]},
            "provider": text,
            "account": {"enum": ["shop", "platform"]},
            "to_phone": text,
            "from_phone": text,
            "body": text,
            "status": text,
            "error_code": text,
            "segments": {"type": "integer"},
            "created_at": moment,
            "order": {"oneOf": [order_ref, {"type": "null"}]},
        },
    }
    missed_call = {
        "type": "object",
        "properties": {
            "from_phone": text,
            "to_phone": text,
            "received_at": moment,
            "orders": {"type": "array", "items": order_ref},
        },
    }
    return {
        "OrderRef": {"type": "object", "properties": {"name": text, "url": text}},
        "OrderList": {
            "type": "object",
            "properties": {
                "orders": {"type": "array", "items": order},
                "totals": {
                    "type": "object",
                    "description": "over the whole filtered range, not only this page",
                    "properties": {
                        name: {"type": "integer"} for name in ("total", *reports.TOTALS)
                    },
                },
                "next_cursor": cursor,
            },
        },
        "OrderCard": {
            "type": "object",
            "properties": {
                "order": {
                    "type": "object",
                    "properties": order["properties"]
                    | {
                        "gateways": {"type": "array", "items": text},
                        "financial_status": text,
                        "fulfillment_status": text,
                        "cancelled_at": nullable_moment,
                    },
                },
                "timeline": {
                    "type": "array",
                    "description": "oldest first",
                    "items": {
                        "type": "object",
                        "properties": {
                            "kind": text,
                            "mode": text,
                            "detail": {"type": "object"},
                            "created_at": moment,
                        },
                    },
                },
                "calls": {"type": "array", "items": call},
                "messages": {"type": "array", "items": message},
                "live": {
                    "type": ["object", "null"],
                    "description": "seed 003's statuses as Shopify holds the order now, and "
                    "its lines (ids for a partial refund); null when Shopify cannot say",
                    "properties": {
                        "order": {"type": "string", "description": "Open, Archived or Cancelled"},
                        "payment": text,
                        "fulfillment": text,
                        "refunded": text,
                        "currency": text,
                        "line_items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": text,
                                    "title": text,
                                    "quantity": {"type": "integer"},
                                    "unit_price": text,
                                    "refundable": {"type": "integer"},
                                    "shipments": {"type": "array", "items": text},
                                    "tracking_urls": {"type": "array", "items": text},
                                },
                            },
                        },
                    },
                },
            },
        },
        "CallList": {
            "type": "object",
            "properties": {"calls": {"type": "array", "items": call}, "next_cursor": cursor},
        },
        "MessageList": {
            "type": "object",
            "properties": {
                "messages": {"type": "array", "items": message},
                "next_cursor": cursor,
            },
        },
        "MissedCallList": {
            "type": "object",
            "properties": {
                "missed_calls": {"type": "array", "items": missed_call},
                "next_cursor": cursor,
            },
        },
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> Any:
    return {
        "name": name,
        "in": "query",
        "description": f"{description}; empty is the same as absent",
        "schema": schema or {"type": "string"},
    }


def _phone() -> dict[str, Any]:
    return {
        "name": "phone",
        "in": "path",
        "required": True,
        "description": "the customer's phone in E.164 (the + URL-encoded as %2B)",
        "schema": {"type": "string", "pattern": PHONE_PATTERN},
    }


def _thread_id() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "a thread of this shop; any other is 404",
        "schema": {"type": "integer"},
    }


def _shared(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _parameters() -> dict[str, Any]:
    return {
        "from": _query(
            "from",
            "ISO 8601 date (from the start of that day in the shop's time zone) or date-time "
            "(the shop's time zone without an offset); default: 7 days before `to`",
        ),
        "to": _query(
            "to",
            "ISO 8601 date (the whole day, in the shop's time zone) or date-time (the shop's "
            "time zone without an offset), at most 7 days after `from`; default: now",
        ),
        "limit": _query(
            "limit",
            f"rows per page (default {reports.DEFAULT_LIMIT})",
            {"type": "integer", "minimum": 1, "maximum": reports.MAX_LIMIT},
        ),
        "cursor": _query("cursor", "the `next_cursor` of the previous page"),
        "customer": _query("customer", "the customer's phone, E.164 or digits"),
        "order": _query("order", "an order name (#1001) or number (1001)"),
    }


def _report(summary: str, schema: str, *filters: Any) -> dict[str, Any]:
    """A newest-first list endpoint with its own filters and the shared range and paging."""
    return {
        "get": {
            "summary": summary,
            "security": [{"shopKey": []}],
            "parameters": [*filters, *map(_shared, ("from", "to", "limit", "cursor"))],
            "responses": {"200": {"description": "a page", **_json(schema)}, **_errors(401, 422)},
        }
    }


def _order_action(summary: str, body: str) -> dict[str, Any]:
    """A merchant action on one order; refused by the rules: 409 naming the rule."""
    return {
        "post": {
            "summary": summary,
            "security": [{"shopKey": []}],
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "the order number (1001) or name (#1001, url-encoded)",
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {"required": True, **_json(body)},
            "responses": {
                "200": {"description": "done by Shopify", **_json("OrderActionResult")},
                **_errors(400, 401, 404, 409, 422, 502),
            },
        }
    }


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
            "parameters": _parameters(),
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
                    "summary": "The shop's settings document",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "settings", **_json("ShopSettings")},
                        **_errors(401),
                    },
                },
                "put": {
                    "summary": "Replace the whole settings document (invalid: 422, nothing saved; "
                    "a newly enabled WhatsApp notification's template is checked live as "
                    "PUT /notifications/whatsapp/{event} checks it: 409)",
                    "security": shop_auth,
                    "requestBody": {"required": True, **_json("ShopSettings")},
                    "responses": {
                        "200": {"description": "saved", **_json("ShopSettings")},
                        **_errors(400, 401, 409, 422, 503),
                    },
                },
            },
            "/shop/accounts": {
                "get": {
                    "summary": "The shop's provider accounts and the account of each channel",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "accounts", **_json("AccountList")},
                        **_errors(401),
                    },
                },
                "post": {
                    "summary": "Connect an account (checked live; wrong credentials: 422 naming "
                    "the field with the provider's reason, nothing stored)",
                    "security": shop_auth,
                    "requestBody": {"required": True, **_json("AccountInput")},
                    "responses": {
                        "201": {"description": "connected", **_json("Account")},
                        **_errors(400, 401, 422, 502),
                    },
                },
            },
            "/shop/accounts/{account_id}": {
                "delete": {
                    "summary": "Remove an account (its channels fall back to the next one)",
                    "security": shop_auth,
                    "parameters": [
                        {
                            "name": "account_id",
                            "in": "path",
                            "required": True,
                            "description": "an id from the account list; any other is 404",
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {"204": {"description": "removed"}, **_errors(401, 404)},
                }
            },
            "/shop/channels": {
                "put": {
                    "summary": "Choose the account that carries a channel",
                    "security": shop_auth,
                    "requestBody": {"required": True, **_json("ChannelChoice")},
                    "responses": {
                        "200": {"description": "the channels", **_json("Channels")},
                        **_errors(400, 401, 422),
                    },
                }
            },
            "/shop/setup": {
                "get": {
                    "summary": "What to paste where for each account, and what is missing",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "the setup list", **_json("Setup")},
                        **_errors(401),
                    },
                }
            },
            "/orders": _report(
                "Orders processed for verification, newest first, with totals",
                "OrderList",
                _shared("customer"),
                _shared("order"),
                _query(
                    "status",
                    "verification status",
                    {"enum": sorted(reports.VERIFICATION_STATUSES)},
                ),
            ),
            "/orders/{name}": {
                "get": {
                    "summary": "One order's card: details, timeline, calls and messages",
                    "security": shop_auth,
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "description": "the order number (1001) or name (#1001, url-encoded)",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "the order card", **_json("OrderCard")},
                        **_errors(401, 404),
                    },
                }
            },
            "/orders/{name}/cancel": _order_action(
                "Cancel the whole order (seed 003): only if not delivered; a paid order is "
                "refunded in the same step, an unpaid one cancelled without refund",
                "CancelOrder",
            ),
            "/orders/{name}/refund": _order_action(
                "Refund a paid order (seed 003): not delivered, it is cancelled and refunded in "
                "one step; delivered, only once the return arrived or without a return when "
                "you say so. With line_items and/or amount, refund part of it and keep the "
                "order; more than is left to refund is refused (409 naming the field)",
                "RefundOrder",
            ),
            "/calls": _report(
                "Verification calls, newest first",
                "CallList",
                _shared("customer"),
                _query("agent", "the number the call came from, E.164 or digits"),
                _shared("order"),
                _query(
                    "direction",
                    "only outbound calls are recorded; inbound lists none",
                    {"enum": list(reports.CALL_DIRECTIONS)},
                ),
                _query("input", "the digits the customer pressed"),
            ),
            "/messages": _report(
                "SMS and WhatsApp messages, both ways, newest first",
                "MessageList",
                _shared("customer"),
                _shared("order"),
                _query("status", "delivery status (queued, sent, delivered, failed, ...)"),
            ),
            "/data-requests": {
                "get": {
                    "summary": "The customers' data exported for Shopify's data requests, "
                    "newest first",
                    "security": shop_auth,
                    "parameters": [
                        _query(
                            "limit",
                            "rows (default 50)",
                            {"type": "integer", "minimum": 1, "maximum": 200},
                        )
                    ],
                    "responses": {
                        "200": {"description": "the exports", **_json("DataRequestList")},
                        **_errors(401, 422),
                    },
                }
            },
            "/data-requests/{id}": {
                "get": {
                    "summary": "One export: the customer's data as a JSON document",
                    "security": shop_auth,
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "the export", **_json("DataRequestExport")},
                        **_errors(401, 404),
                    },
                }
            },
            "/notifications/preview": {
                "post": {
                    "summary": "An event's notification as the customer gets it: the SMS text "
                    "with its encoding, segments and credits, or the WhatsApp template's "
                    "variables (with an order's values, else sample values)",
                    "security": shop_auth,
                    "requestBody": {"required": True, **_json("PreviewRequest")},
                    "responses": {
                        "200": {"description": "the preview", **_json("NotificationPreview")},
                        **_errors(400, 401, 404, 422),
                    },
                }
            },
            "/notifications/whatsapp/{event}": {
                "put": {
                    "summary": "Enable an event's WhatsApp notification with its template "
                    "(checked live: it must be APPROVED at the provider; the platform's "
                    "account needs its per-message charge accepted), or disable it",
                    "security": shop_auth,
                    "parameters": [
                        {
                            "name": "event",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(EVENTS)},
                        }
                    ],
                    "requestBody": {"required": True, **_json("WhatsAppChoice")},
                    "responses": {
                        "200": {"description": "saved", **_json("WhatsAppNotification")},
                        **_errors(400, 401, 404, 409, 422, 503),
                    },
                }
            },
            "/notifications/shipments-webhook": {
                "get": {
                    "summary": "The URL carriers and fulfilment platforms post shipment events "
                    "to (POST {order, status, awb, carrier, reason, tracking_url}); it holds "
                    "the shop's secret",
                    "security": shop_auth,
                    "responses": {
                        "200": {"description": "the URL", **_json("ShipmentsWebhook")},
                        **_errors(401),
                    },
                }
            },
            "/billing": {
                "get": {
                    "summary": "Messages that left and their credits, per provider, account, "
                    "channel and journey event",
                    "security": shop_auth,
                    "parameters": [
                        _query(
                            "from",
                            "ISO 8601 date (its first moment in the shop's time zone) or "
                            "date-time; default: 30 days before `to`",
                            _DATE_OR_TIME,
                        ),
                        _query(
                            "to",
                            "ISO 8601 date (the whole day) or date-time; default: now; before "
                            "`from`: nothing is counted",
                            _DATE_OR_TIME,
                        ),
                    ],
                    "responses": {
                        "200": {"description": "the sums", **_json("Billing")},
                        **_errors(401, 422),
                    },
                }
            },
            "/customers/{phone}/consent": {
                "get": {
                    "summary": "A customer's consent per channel, with its history",
                    "security": shop_auth,
                    "parameters": [_phone()],
                    "responses": {
                        "200": {"description": "consent", **_json("CustomerConsent")},
                        **_errors(401, 422),
                    },
                },
                "put": {
                    "summary": "Record the merchant's change of a customer's consent on a channel "
                    "(the send gate obeys it at once)",
                    "security": shop_auth,
                    "parameters": [_phone()],
                    "requestBody": {"required": True, **_json("ConsentChange")},
                    "responses": {
                        "200": {"description": "consent", **_json("CustomerConsent")},
                        **_errors(400, 401, 422),
                    },
                },
            },
            "/threads": {
                "get": {
                    "summary": "The merchant's threads with customers, latest activity first",
                    "security": shop_auth,
                    "parameters": [
                        _query(
                            "status", "the thread's status", {"enum": ["unanswered", "answered"]}
                        )
                    ],
                    "responses": {
                        "200": {"description": "threads", **_json("ThreadList")},
                        **_errors(401, 422),
                    },
                }
            },
            "/threads/{id}": {
                "get": {
                    "summary": "One thread with its messages, both ways",
                    "security": shop_auth,
                    "parameters": [_thread_id()],
                    "responses": {
                        "200": {"description": "the thread", **_json("ThreadMessages")},
                        **_errors(401, 404),
                    },
                }
            },
            "/threads/{id}/reply": {
                "post": {
                    "summary": "Answer the customer on the thread's channel, through the shop's "
                    "account (a phone opted out of the channel gets nothing: suppressed)",
                    "security": shop_auth,
                    "parameters": [_thread_id()],
                    "requestBody": {"required": True, **_json("ThreadReply")},
                    "responses": {
                        "201": {"description": "queued", **_json("ThreadAnswer")},
                        **_errors(400, 401, 404, 422),
                    },
                }
            },
            "/missed-calls": _report(
                "Missed calls, newest first, with the orders each was matched to",
                "MissedCallList",
                _shared("customer"),
                _shared("order"),
            ),
        },
    }


async def document(request: web.Request) -> web.Response:
    return web.json_response(build())
