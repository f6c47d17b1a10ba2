"""A fake Shopify on 127.0.0.1: Admin GraphQL, OAuth and webhook deliveries, state in memory.

Answers in Shopify's wire shapes (cost extension, THROTTLED, userErrors); records each request.
Serves the tests and the sandbox (where it is the demo shop's Shopify, on the sandbox's clock).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from clock import Clock
from providers.sandbox.server import FakeServer

API_VERSION = "2025-10"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
CODE_NOT_FOUND = "The authorization code was not found or was already used"
MUTATION_COST = 10

KNOWN_TOPICS = (
    "app/uninstalled",
    "app/scopes_update",
    "customers/create",
    "customers/update",
    "customers/delete",
    "fulfillments/create",
    "fulfillments/update",
    "fulfillment_events/create",
    "order_transactions/create",
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/delete",
    "orders/edited",
    "orders/fulfilled",
    "orders/paid",
    "orders/partially_fulfilled",
    "refunds/create",
    "returns/approve",
    "returns/request",
    "shop/update",
)
# The access scope a topic needs beyond the orders' and customers'.
_TOPIC_SCOPES = {"returns/approve": "read_returns", "returns/request": "read_returns"}
_TOPIC_BY_ENUM = {topic.upper().replace("/", "_"): topic for topic in KNOWN_TOPICS}
_CANCEL_REASONS = frozenset({"CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF"})
_SMS_STATES = frozenset({"SUBSCRIBED", "UNSUBSCRIBED", "NOT_SUBSCRIBED", "PENDING"})
_FULFILLMENT_ENUM = {
    "fulfilled": "FULFILLED",
    "partial": "PARTIALLY_FULFILLED",
    "restocked": "RESTOCKED",
}
_CAPTURED_KINDS = frozenset({"SALE", "CAPTURE"})
_PAID_STATUSES = frozenset({"paid", "partially_paid", "partially_refunded", "refunded"})
_FIRST_FIELD = re.compile(r"\s*(?:\w+\s*:\s*)?(\w+)")
_UPDATED_AFTER = re.compile(r"updated_at:>'?([^'\s]+)'?")
_PHONE_FILTER = re.compile(r"phone:'?([^'\s]+)'?")

_ORDER_IDS = itertools.count(5_912_345_678_901)
_ORDER_NUMBERS = itertools.count(1001)
_CUSTOMER_IDS = itertools.count(7_012_345_678_901)
_LINE_ITEM_IDS = itertools.count(13_512_345_678_901)

Handler = Callable[["_Shop", dict[str, Any]], dict[str, Any]]


class _GraphQLError(Exception):
    """A top-level GraphQL error (bad variables, unknown field, a scope the token lacks)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Shop:
    domain: str
    token: str
    name: str
    currency: str
    iana_timezone: str
    phone: str
    country_code: str
    email: str
    locale: str = "en"
    # A custom app's API secret key: it signs this shop's webhooks ("" : the app's own).
    app_secret: str = ""
    # The access scopes its token was granted (None: every scope the app asks for).
    scopes: frozenset[str] | None = None
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Throttle:
    currently_available: float
    requested_cost: float
    restore_rate: float
    http_status: int


class FakeShopify(FakeServer):
    """Shopify's Admin GraphQL API, OAuth and webhook sender, in memory on loopback."""

    party = "shopify"

    def __init__(
        self,
        *,
        api_key: str = "fake-api-key",
        api_secret: str = "fake-api-secret",
        clock: Clock | None = None,
    ):
        if clock is not None:
            self.clock = clock
        self.api_key = api_key
        self.api_secret = api_secret
        self.requests: list[tuple[str, Any, dict[str, str]]] = []
        self.webhook_subscriptions: dict[str, list[tuple[str, str]]] = {}
        self.cancellations: list[dict[str, Any]] = []
        self._shops: dict[str, _Shop] = {}
        self._codes: dict[str, tuple[str, str]] = {}
        self._throttles: list[_Throttle] = []
        self._failures: list[int] = []
        self._ids = itertools.count(1)
        self._operations: dict[str, Handler] = {
            "shop": self._shop_info,
            "webhookSubscriptionCreate": self._webhook_create,
            "tagsAdd": lambda shop, variables: self._tags(shop, variables, "tagsAdd"),
            "tagsRemove": lambda shop, variables: self._tags(shop, variables, "tagsRemove"),
            "orderCancel": self._order_cancel,
            "refundCreate": self._refund_create,
            "order": self._order,
            "orders": self._orders,
            "customers": self._customers,
            "customerSmsMarketingConsentUpdate": self._sms_consent_update,
        }

    @property
    def admin_url_template(self) -> str:
        """The `shopify.admin_url` setting that points the client at this fake."""
        return f"{self.base_url}/{{shop}}/admin/api/{{version}}/graphql.json"

    def routes(self, app: web.Application) -> None:
        """The provider API this fake answers."""
        app.router.add_post("/{shop}/admin/api/{version}/graphql.json", self._graphql)
        app.router.add_get("/{shop}/admin/oauth/authorize", self._authorize)
        app.router.add_post("/{shop}/admin/oauth/access_token", self._access_token)

    async def summary(self, request: web.Request) -> str:
        """The GraphQL operation and its variables, or the OAuth step."""
        if request.path.endswith("/oauth/authorize"):
            return f"OAuth authorize {request.match_info.get('shop', '')}"
        if request.path.endswith("/oauth/access_token"):
            return f"OAuth access token {request.match_info.get('shop', '')}"
        body = _json(await request.read())
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return "GraphQL request without a query"
        root, _ = _root_field(body["query"])
        variables = body.get("variables")
        if not variables:
            return root
        return f"{root} {json.dumps(variables, separators=(',', ':'), ensure_ascii=False)}"

    # State -----------------------------------------------------------------------------

    def add_shop(
        self,
        domain: str,
        token: str,
        *,
        name: str = "",
        currency: str = "INR",
        iana_timezone: str = "Asia/Kolkata",
        phone: str = "",
        country_code: str = "IN",
        email: str = "",
        locale: str = "en",
        app_secret: str = "",
        scopes: str | None = None,
    ) -> None:
        """Install the app on a shop with this access token (keeps its data if it exists);
        `locale` is its primary locale. With `app_secret` the token is a custom app's, made
        in the shop's admin, and that app's API secret key signs the shop's webhooks.
        `scopes` ("read_orders,write_orders"): the token's, when not every one asked for."""
        shop = self._shops.get(domain)
        info = {
            "token": token,
            "name": name or domain.split(".")[0],
            "currency": currency,
            "iana_timezone": iana_timezone,
            "phone": phone,
            "country_code": country_code,
            "email": email or f"owner@{domain}",
            "locale": locale,
            "app_secret": app_secret,
            "scopes": _scopes(scopes),
        }
        if shop is None:
            self._shops[domain] = _Shop(domain=domain, **info)
        else:
            for key, value in info.items():
                setattr(shop, key, value)

    def add_order(self, domain: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store an order given in the REST / webhook shape; returns the stored copy."""
        shop = self._shops[domain]
        order = copy.deepcopy(payload)
        order_id = int(order["id"])
        order.setdefault("updated_at", order.get("created_at"))
        order.setdefault("refunds", [])
        shop.orders[order_id] = order
        shop.transactions[order_id] = self._initial_transactions(order)
        customer = order.get("customer")
        if isinstance(customer, dict) and customer.get("id") is not None:
            shop.customers.setdefault(int(customer["id"]), copy.deepcopy(customer))
        return order

    def add_customer(self, domain: str, customer: dict[str, Any]) -> dict[str, Any]:
        """Store a customer given in the REST shape; returns the stored copy."""
        stored = copy.deepcopy(customer)
        self._shops[domain].customers[int(stored["id"])] = stored
        return stored

    def order(self, domain: str, order_id: int | str) -> dict[str, Any]:
        """The stored order (REST shape, live: tags, cancellation, refunds, updated_at)."""
        return self._shops[domain].orders[int(order_id)]

    def orders(self, domain: str) -> list[dict[str, Any]]:
        """The shop's orders (REST shape, live), in the order they were added."""
        return list(self._shops[domain].orders.values())

    def customers(self, domain: str) -> list[dict[str, Any]]:
        """The shop's customers (REST shape, live), in the order they were added."""
        return list(self._shops[domain].customers.values())

    def customer(self, domain: str, customer_id: int | str) -> dict[str, Any]:
        """The stored customer (REST shape, live)."""
        return self._shops[domain].customers[int(customer_id)]

    def tags(self, domain: str, order_id: int | str) -> list[str]:
        """The order's tags."""
        return _split_tags(self.order(domain, order_id).get("tags"))

    def token(self, domain: str) -> str:
        """The shop's current access token."""
        return self._shops[domain].token

    def throttle_next(
        self,
        count: int,
        *,
        currently_available: float,
        requested_cost: float,
        restore_rate: float,
        http_status: int = 200,
    ) -> None:
        """Answer the next `count` GraphQL calls with Shopify's THROTTLED error."""
        spec = _Throttle(currently_available, requested_cost, restore_rate, http_status)
        self._throttles.extend([spec] * count)

    def fail_next(self, count: int, status: int = 502) -> None:
        """Answer the next `count` GraphQL calls with an HTML error page and `status`."""
        self._failures.extend([status] * count)

    # Webhooks --------------------------------------------------------------------------

    async def send_webhook(
        self,
        url: str,
        topic: str,
        shop: str,
        payload: dict[str, Any],
        *,
        webhook_id: str | None = None,
        event_id: str | None = None,
        triggered_at: datetime | None = None,
        secret: str | None = None,
        api_version: str = API_VERSION,
    ) -> int:
        """POST a webhook delivery like Shopify's, signed with `secret`, else the shop's
        custom app's secret, else the app secret."""
        if self._http is None:
            raise RuntimeError("FakeShopify.start() has not been called")
        if secret is None:
            known = self._shops.get(shop)
            secret = (known.app_secret if known else "") or self.api_secret
        body = json.dumps(payload).encode()
        moment = (triggered_at or self.clock.now()).astimezone(UTC)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": webhook_hmac(body, secret),
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-API-Version": api_version,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        async with self._http.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    # OAuth -----------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        self._record(request, None)
        shop, query = request.match_info["shop"], request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.api_key or not redirect_uri:
            return web.Response(status=400, text="Oauth error invalid_request")
        code = secrets.token_hex(16)
        self._codes[code] = (shop, query.get("scope", ""))
        params = {"code": code, "host": _admin_host(shop), "shop": shop}
        if "state" in query:
            params["state"] = query["state"]
        params["timestamp"] = str(int(self.clock.now().timestamp()))
        params["hmac"] = _query_hmac(params, self.api_secret)
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode(params)}")

    async def _access_token(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = _json(raw)
        self._record(request, body)
        shop = request.match_info["shop"]
        if not isinstance(body, dict):
            body = dict(await request.post())
        granted = (
            body.get("client_id") == self.api_key
            and body.get("client_secret") == self.api_secret
            and self._codes.get(str(body.get("code")), ("", ""))[0] == shop
        )
        if not granted:
            return web.json_response(
                {"error": "invalid_request", "error_description": CODE_NOT_FOUND}, status=400
            )
        _, scope = self._codes.pop(str(body["code"]))
        token = f"shpat_{secrets.token_hex(16)}"
        if shop in self._shops:
            self._shops[shop].token = token
            self._shops[shop].scopes = _scopes(scope)
        else:
            self.add_shop(shop, token, scopes=scope)
        return web.json_response({"access_token": token, "scope": scope})

    # GraphQL ---------------------------------------------------------------------------

    async def _graphql(self, request: web.Request) -> web.Response:
        body = _json(await request.read())
        self._record(request, body)
        shop = self._shops.get(request.match_info["shop"])
        if shop is None or request.headers.get("X-Shopify-Access-Token") != shop.token:
            return web.json_response({"errors": INVALID_TOKEN}, status=401)
        if self._failures:
            status = self._failures.pop(0)
            return web.Response(status=status, text="<html><body>Bad Gateway</body></html>")
        if self._throttles:
            spec = self._throttles.pop(0)
            return web.json_response(_throttled(spec), status=spec.http_status)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return web.json_response(
                {"errors": {"query": "Required parameter missing or invalid"}}, status=400
            )
        variables = body.get("variables") if isinstance(body.get("variables"), dict) else {}
        return web.json_response(self._execute(shop, body["query"], variables))

    def _execute(self, shop: _Shop, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        root, is_mutation = _root_field(query)
        literal = re.search(rf"\b{root}\(\s*first:\s*(\d+)", query) if root else None
        if literal and "first" not in variables:
            variables = {**variables, "first": int(literal.group(1))}
        cost = MUTATION_COST if is_mutation else 1 + int(variables.get("first") or 0)
        extensions = {"cost": _cost(cost, cost)}
        handler = self._operations.get(root)
        try:
            if handler is None:
                raise _GraphQLError(f"Field '{root}' doesn't exist on type 'QueryRoot'")
            data = handler(shop, variables)
        except _GraphQLError as exc:
            error: dict[str, Any] = {"message": str(exc), "locations": []}
            if not exc.code:
                return {"errors": [error], "extensions": extensions}
            error |= {"path": [root], "extensions": {"code": exc.code}}
            return {"errors": [error], "data": {root: None}, "extensions": extensions}
        return {"data": data, "extensions": extensions}

    def _shop_info(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        return {
            "shop": {
                "name": shop.name,
                "email": shop.email,
                "contactEmail": shop.email,
                "myshopifyDomain": shop.domain,
                "currencyCode": shop.currency,
                "ianaTimezone": shop.iana_timezone,
                "billingAddress": {
                    "phone": shop.phone or None,
                    "countryCodeV2": shop.country_code,
                },
            },
            "shopLocales": [{"locale": shop.locale, "primary": True, "published": True}],
        }

    def _webhook_create(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        topic_enum = variables.get("topic")
        topic = _TOPIC_BY_ENUM.get(str(topic_enum))
        if topic is None:
            raise _GraphQLError(_invalid_variable("topic", "WebhookSubscriptionTopic!"))
        scope = _TOPIC_SCOPES.get(topic)
        if scope and shop.scopes is not None and scope not in shop.scopes:
            raise _GraphQLError(
                "Access denied for webhookSubscriptionCreate field. "
                f"Required access: `{scope}` access scope.",
                "ACCESS_DENIED",
            )
        subscription = _dict(variables.get("webhookSubscription"))
        uri = subscription.get("uri") or subscription.get("callbackUrl")
        subscriptions = self.webhook_subscriptions.setdefault(shop.domain, [])
        if not uri:
            return _webhook_result(
                None, [_user_error(["webhookSubscription", "uri"], "Address can't be blank")]
            )
        if (topic, uri) in subscriptions:
            error = _user_error(
                ["webhookSubscription", "callbackUrl"],
                "Address for this topic has already been taken",
            )
            return _webhook_result(None, [error])
        subscriptions.append((topic, uri))
        node = {
            "id": f"gid://shopify/WebhookSubscription/{next(self._ids)}",
            "topic": topic_enum,
            "uri": uri,
            "format": "JSON",
        }
        return _webhook_result(node, [])

    def _tags(self, shop: _Shop, variables: dict[str, Any], root: str) -> dict[str, Any]:
        order = self._find(shop.orders, variables.get("id"), "Order")
        if order is None:
            return {
                root: {"node": None, "userErrors": [_user_error(["id"], "Order does not exist")]}
            }
        requested = variables.get("tags")
        wanted = _split_tags(requested) if isinstance(requested, str) else list(requested or [])
        current = _split_tags(order.get("tags"))
        if root == "tagsAdd":
            known = {tag.lower() for tag in current}
            current += [tag for tag in wanted if tag.lower() not in known]
        else:
            gone = {tag.lower() for tag in wanted}
            current = [tag for tag in current if tag.lower() not in gone]
        order["tags"] = ", ".join(current)
        order["updated_at"] = self._now()
        return {root: {"node": {"id": _gid("Order", order["id"])}, "userErrors": []}}

    def _order_cancel(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        reason = variables.get("reason")
        refund_method = variables.get("refundMethod")
        if reason not in _CANCEL_REASONS:
            raise _GraphQLError(_invalid_variable("reason", "OrderCancelReason!"))
        if not isinstance(refund_method, dict) and not isinstance(variables.get("refund"), bool):
            raise _GraphQLError(_invalid_variable("refundMethod", "OrderCancelRefundMethodInput!"))
        if not isinstance(variables.get("restock"), bool):
            raise _GraphQLError(_invalid_variable("restock", "Boolean!"))
        order = self._find(shop.orders, variables.get("orderId"), "Order")
        if order is None:
            return _cancel_result([_user_error(["orderId"], "Order does not exist", "NOT_FOUND")])
        if order.get("cancelled_at"):
            return _cancel_result(
                [_user_error(["orderId"], "Order has already been cancelled", "INVALID")]
            )
        refund = (
            bool(refund_method.get("originalPaymentMethodsRefund"))
            if isinstance(refund_method, dict)
            else bool(variables.get("refund"))
        )
        self._cancel(shop, order, reason, refund, variables)
        return _cancel_result([])

    def _cancel(
        self,
        shop: _Shop,
        order: dict[str, Any],
        reason: str,
        refund: bool,
        variables: dict[str, Any],
    ) -> None:
        now = self._now()
        order["cancelled_at"] = now
        order["cancel_reason"] = reason.lower()
        order["updated_at"] = now
        if refund and self._captured(shop, order):
            order["financial_status"] = "refunded"
        elif order.get("financial_status") in ("pending", "authorized"):
            order["financial_status"] = "voided"
        self.cancellations.append(
            {
                "shop": shop.domain,
                "order_id": int(order["id"]),
                "reason": reason,
                "refund": refund,
                "restock": variables.get("restock"),
                "notify_customer": variables.get("notifyCustomer"),
                "staff_note": variables.get("staffNote"),
            }
        )

    def _refund_create(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        refund_input = _dict(variables.get("input"))
        order = self._find(shop.orders, refund_input.get("orderId"), "Order")
        if order is None:
            return _refund_result(None, [_user_error(["orderId"], "Order does not exist")])
        requested = _list(refund_input.get("transactions"))
        lines = _list(refund_input.get("refundLineItems"))
        errors, total = self._check_refund(shop, order, requested)
        errors += _check_refund_lines(order, lines)
        if errors:
            return _refund_result(None, errors)
        refund_id = next(self._ids)
        refund_transactions = [self._refund_transaction(shop, order, item) for item in requested]
        order["refunds"].append(
            {
                "id": refund_id,
                "note": refund_input.get("note"),
                "created_at": self._now(),
                "transactions": refund_transactions,
                "refund_line_items": [
                    {
                        "line_item_id": _legacy(str(line["lineItemId"])),
                        "quantity": line["quantity"],
                        "restock_type": str(line.get("restockType") or "NO_RESTOCK").lower(),
                    }
                    for line in map(_dict, lines)
                ],
            }
        )
        fully = self._refunded(shop, order) >= self._captured(shop, order)
        order["financial_status"] = "refunded" if fully else "partially_refunded"
        order["updated_at"] = self._now()
        money = {"amount": _graphql_money(total), "currencyCode": order.get("currency")}
        node = {
            "id": _gid("Refund", refund_id),
            "note": refund_input.get("note"),
            "totalRefundedSet": {"shopMoney": money, "presentmentMoney": money},
        }
        return _refund_result(node, [])

    def _check_refund(
        self, shop: _Shop, order: dict[str, Any], requested: list[Any]
    ) -> tuple[list[dict[str, Any]], Decimal]:
        parents = {
            transaction["id"]: transaction
            for transaction in shop.transactions[int(order["id"])]
            if transaction["kind"] in _CAPTURED_KINDS and transaction["status"] == "SUCCESS"
        }
        errors, total = [], Decimal(0)
        for index, item in enumerate(map(_dict, requested)):
            where = ["transactions", str(index)]
            amount = _decimal(item.get("amount"))
            if item.get("parentId") not in parents:
                errors.append(
                    _user_error([*where, "parentId"], "Parent transaction does not exist")
                )
            elif item.get("kind") != "REFUND":
                errors.append(_user_error([*where, "kind"], "Kind is not included in the list"))
            elif amount is None or amount <= 0:
                errors.append(_user_error([*where, "amount"], "Amount must be greater than 0"))
            else:
                total += amount
        available = self._captured(shop, order) - self._refunded(shop, order)
        if not errors and total > available:
            message = f"Refund amount {total} is greater than the refundable amount {available}"
            errors.append(_user_error(["transactions"], message))
        return errors, total

    def _refund_transaction(
        self, shop: _Shop, order: dict[str, Any], item: dict[str, Any]
    ) -> dict[str, Any]:
        transaction = {
            "id": _gid("OrderTransaction", next(self._ids)),
            "kind": "REFUND",
            "status": "SUCCESS",
            "gateway": item.get("gateway"),
            "amount": str(item.get("amount")),
            "parentId": item.get("parentId"),
        }
        shop.transactions[int(order["id"])].append(transaction)
        return {
            "id": _legacy(transaction["id"]),
            "kind": "refund",
            "status": "success",
            "gateway": transaction["gateway"],
            "amount": transaction["amount"],
            "parent_id": _legacy(str(item.get("parentId"))),
        }

    def _order(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._find(shop.orders, variables.get("id"), "Order")
        if order is None:
            return {"order": None}
        node = self._order_node(shop, order)
        if "suggestFullRefund" in variables or "refundLineItems" in variables:
            node["suggestedRefund"] = self._suggested_refund(shop, order, variables)
        return {"order": node}

    def _suggested_refund(
        self, shop: _Shop, order: dict[str, Any], variables: dict[str, Any]
    ) -> dict[str, Any]:
        """Shopify's suggestion: the lines' prices (everything left for a full refund), at
        most what is left, over the captured payments in turn."""
        currency = order.get("currency")
        maximum = self._captured(shop, order) - self._refunded(shop, order)
        lines = _list(variables.get("refundLineItems"))
        items = {_gid("LineItem", item.get("id")): item for item in _line_items(order)}
        if variables.get("suggestFullRefund"):
            amount = maximum
        else:
            amount = Decimal(0)
            for line in map(_dict, lines):
                item = items.get(str(line.get("lineItemId")))
                if item is None:
                    raise _GraphQLError(f"Invalid global id '{line.get('lineItemId')}'")
                price = _decimal(item.get("price")) or Decimal(0)
                amount += price * int(line.get("quantity") or 0)
            amount = min(amount, maximum)
        transactions, left = [], amount
        for parent, available in self._refundable_payments(shop, order):
            share = min(left, available)
            left -= share
            transactions.append(
                {
                    "gateway": parent["gateway"],
                    "kind": "SUGGESTED_REFUND",
                    "parentTransaction": {"id": parent["id"]},
                    "amountSet": _money_bag(share, currency),
                    "maximumRefundableSet": _money_bag(available, currency),
                }
            )
        return {
            "amountSet": _money_bag(amount, currency),
            "maximumRefundableSet": _money_bag(maximum, currency),
            "refundLineItems": [
                {"lineItem": {"id": line.get("lineItemId")}, "quantity": line.get("quantity")}
                for line in map(_dict, lines)
            ],
            "suggestedTransactions": transactions,
        }

    def _refundable_payments(
        self, shop: _Shop, order: dict[str, Any]
    ) -> list[tuple[dict[str, Any], Decimal]]:
        """Each captured payment with what is left of it to refund."""
        transactions = shop.transactions[int(order["id"])]
        left = []
        for parent in transactions:
            if parent["kind"] not in _CAPTURED_KINDS or parent["status"] != "SUCCESS":
                continue
            refunded = sum(
                (
                    _decimal(child["amount"]) or Decimal(0)
                    for child in transactions
                    if child["kind"] == "REFUND" and child["parentId"] == parent["id"]
                ),
                Decimal(0),
            )
            available = (_decimal(parent["amount"]) or Decimal(0)) - refunded
            if available > 0:
                left.append((parent, available))
        return left

    def _orders(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        first = variables.get("first")
        if not isinstance(first, int) or not 1 <= first <= 250:
            raise _GraphQLError("first must be between 1 and 250")
        orders = sorted(shop.orders.values(), key=_order_key)
        match = _UPDATED_AFTER.search(str(variables.get("query") or ""))
        if match:
            since = _instant(match.group(1))
            orders = [order for order in orders if _instant(order["updated_at"]) > since]
        after = variables.get("after")
        if after:
            position = _decode_cursor(after)
            orders = [order for order in orders if _order_key(order) > position]
        page = orders[:first]
        edges = [
            {"cursor": _cursor(order), "node": self._order_node(shop, order)} for order in page
        ]
        return {
            "orders": _connection(edges, has_next=len(orders) > first, has_previous=bool(after))
        }

    def _customers(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        match = _PHONE_FILTER.search(str(variables.get("query") or ""))
        customers = list(shop.customers.values())
        if match:
            phone = _digits(match.group(1))
            customers = [
                customer for customer in customers if _digits(customer.get("phone")) == phone
            ]
        first = variables.get("first") or 10
        edges = [
            {"cursor": str(customer["id"]), "node": _customer_node(customer)}
            for customer in customers[:first]
        ]
        return {
            "customers": _connection(edges, has_next=len(customers) > first, has_previous=False)
        }

    def _sms_consent_update(self, shop: _Shop, variables: dict[str, Any]) -> dict[str, Any]:
        update = _dict(variables.get("input"))
        consent = _dict(update.get("smsMarketingConsent"))
        if consent.get("marketingState") not in _SMS_STATES:
            raise _GraphQLError(
                _invalid_variable("input", "CustomerSmsMarketingConsentUpdateInput!")
            )
        customer = self._find(shop.customers, update.get("customerId"), "Customer")
        root = "customerSmsMarketingConsentUpdate"
        if customer is None:
            error = _user_error(["input", "customerId"], "Customer not found")
            return {root: {"customer": None, "userErrors": [error]}}
        if not customer.get("phone"):
            error = _user_error(["input", "smsMarketingConsent"], "Phone can't be blank")
            return {root: {"customer": None, "userErrors": [error]}}
        level = consent.get("marketingOptInLevel")
        customer["sms_marketing_consent"] = {
            "state": consent["marketingState"].lower(),
            "opt_in_level": level.lower() if isinstance(level, str) else None,
            "consent_updated_at": consent.get("consentUpdatedAt") or self._now(),
            "consent_collected_from": "OTHER",
        }
        return {root: {"customer": _customer_node(customer), "userErrors": []}}

    # REST -> GraphQL -------------------------------------------------------------------

    def _order_node(self, shop: _Shop, order: dict[str, Any]) -> dict[str, Any]:
        currency = order.get("currency")
        customer = order.get("customer")
        if isinstance(customer, dict) and customer.get("id") is not None:
            customer = shop.customers.get(int(customer["id"]), customer)
        financial = order.get("financial_status")
        return {
            "id": _gid("Order", order["id"]),
            "legacyResourceId": str(order["id"]),
            "name": order.get("name"),
            "number": order.get("order_number"),
            "createdAt": _graphql_time(order.get("created_at")),
            "updatedAt": _graphql_time(order.get("updated_at")),
            "cancelledAt": _graphql_time(order.get("cancelled_at")),
            "closed": bool(order.get("closed_at")),
            "closedAt": _graphql_time(order.get("closed_at")),
            "cancelReason": (order.get("cancel_reason") or "").upper() or None,
            "currencyCode": currency,
            "totalPriceSet": _money_bag(order.get("total_price"), currency),
            "totalRefundedSet": _money_bag(self._refunded(shop, order), currency),
            "displayFinancialStatus": financial.upper() if isinstance(financial, str) else None,
            "displayFulfillmentStatus": _FULFILLMENT_ENUM.get(
                str(order.get("fulfillment_status")), "UNFULFILLED"
            ),
            "paymentGatewayNames": list(order.get("payment_gateway_names") or []),
            "tags": _split_tags(order.get("tags")),
            "phone": order.get("phone"),
            "email": order.get("email"),
            "statusPageUrl": order.get("order_status_url"),
            "customer": _customer_node(customer) if isinstance(customer, dict) else None,
            "shippingAddress": _address_node(order.get("shipping_address")),
            "billingAddress": _address_node(order.get("billing_address")),
            "lineItems": _connection(
                [
                    {
                        "cursor": str(item.get("id")),
                        "node": _line_item_node(item, currency)
                        | {"refundableQuantity": _refundable_quantity(order, item)},
                    }
                    for item in _line_items(order)
                ],
                has_next=False,
                has_previous=False,
            ),
            "fulfillments": [
                _fulfillment_node(fulfillment)
                for fulfillment in map(_dict, order.get("fulfillments") or [])
            ],
            "transactions": [
                _transaction_node(transaction, currency)
                for transaction in shop.transactions.get(int(order["id"]), [])
            ],
        }

    # Helpers ---------------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock.now().astimezone(UTC).isoformat(timespec="seconds")

    def _record(self, request: web.Request, body: Any) -> None:
        self.requests.append((request.path, body, dict(request.headers)))

    def _find(
        self, table: dict[int, dict[str, Any]], gid: Any, kind: str
    ) -> dict[str, Any] | None:
        prefix = f"gid://shopify/{kind}/"
        if not isinstance(gid, str) or not gid.startswith(prefix):
            raise _GraphQLError(f"Invalid global id '{gid}'")
        number = gid.removeprefix(prefix)
        return table.get(int(number)) if number.isdigit() else None

    def _initial_transactions(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        gateways = order.get("payment_gateway_names") or ["manual"]
        status = order.get("financial_status")
        if status not in _PAID_STATUSES and status != "authorized":
            return []
        return [
            {
                "id": _gid("OrderTransaction", next(self._ids)),
                "kind": "AUTHORIZATION" if status == "authorized" else "SALE",
                "status": "SUCCESS",
                "gateway": gateways[0],
                "amount": str(order.get("total_price")),
                "parentId": None,
            }
        ]

    def _captured(self, shop: _Shop, order: dict[str, Any]) -> Decimal:
        return self._sum(shop, order, _CAPTURED_KINDS)

    def _refunded(self, shop: _Shop, order: dict[str, Any]) -> Decimal:
        return self._sum(shop, order, frozenset({"REFUND"}))

    def _sum(self, shop: _Shop, order: dict[str, Any], kinds: frozenset[str]) -> Decimal:
        return sum(
            (
                _decimal(transaction["amount"]) or Decimal(0)
                for transaction in shop.transactions[int(order["id"])]
                if transaction["kind"] in kinds and transaction["status"] == "SUCCESS"
            ),
            Decimal(0),
        )


def webhook_hmac(body: bytes, secret: str) -> str:
    """Shopify's X-Shopify-Hmac-Sha256 value: base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def order_payload(**overrides: Any) -> dict[str, Any]:
    """A full-size orders/create payload like Shopify's (cash on delivery, India); any key
    can be overridden, and a new id and order number are drawn for each call."""
    order_id = overrides.get("id", next(_ORDER_IDS))
    number = overrides.get("order_number", next(_ORDER_NUMBERS))
    customer = _customer_payload(next(_CUSTOMER_IDS))
    payload = {
        "id": order_id,
        "admin_graphql_api_id": _gid("Order", order_id),
        "app_id": 580111,
        "browser_ip": "203.0.113.7",
        "buyer_accepts_marketing": False,
        "cancel_reason": None,
        "cancelled_at": None,
        "cart_token": secrets.token_hex(16),
        "checkout_token": secrets.token_hex(16),
        "closed_at": None,
        "confirmation_number": "X7K2Q9PLM",
        "confirmed": True,
        "contact_email": customer["email"],
        "created_at": "2026-01-15T10:30:00+05:30",
        "currency": "INR",
        "current_subtotal_price": "1398.00",
        "current_total_discounts": "0.00",
        "current_total_price": "1499.00",
        "current_total_tax": "0.00",
        "customer_locale": "en-IN",
        "discount_codes": [],
        "email": customer["email"],
        "estimated_taxes": False,
        "financial_status": "pending",
        "fulfillment_status": None,
        "landing_site": "/",
        "name": f"#{number}",
        "note": None,
        "note_attributes": [],
        "number": number - 1000,
        "order_number": number,
        "order_status_url": f"https://demo.myshopify.com/orders/{secrets.token_hex(16)}",
        "payment_gateway_names": ["Cash on Delivery (COD)"],
        "phone": None,
        "presentment_currency": "INR",
        "processed_at": "2026-01-15T10:30:00+05:30",
        "source_name": "web",
        "subtotal_price": "1398.00",
        "tags": "",
        "taxes_included": True,
        "test": False,
        "token": secrets.token_hex(16),
        "total_discounts": "0.00",
        "total_line_items_price": "1398.00",
        "total_price": "1499.00",
        "total_shipping_price_set": _rest_money_set("101.00"),
        "total_tax": "0.00",
        "total_weight": 650,
        "updated_at": "2026-01-15T10:30:05+05:30",
        "billing_address": _address_payload("+91 98765 43210"),
        "customer": customer,
        "shipping_address": _address_payload("098765 43210"),
        "shipping_lines": [
            {"code": "Standard", "price": "101.00", "title": "Standard", "source": "shopify"}
        ],
        "line_items": [
            _line_item_payload("Cotton Kurta - M", "899.00", "KURTA-COT-M"),
            _line_item_payload("Block Print Dupatta", "499.00", "DUPATTA-BLK"),
        ],
        "fulfillments": [],
        "refunds": [],
    }
    payload.update(overrides)
    if "id" in overrides and "admin_graphql_api_id" not in overrides:
        payload["admin_graphql_api_id"] = _gid("Order", order_id)
    return payload


def _customer_payload(customer_id: int) -> dict[str, Any]:
    return {
        "id": customer_id,
        "admin_graphql_api_id": _gid("Customer", customer_id),
        "email": "asha.rao@example.com",
        "first_name": "Asha",
        "last_name": "Rao",
        "phone": "+919876543210",
        "state": "enabled",
        "currency": "INR",
        "verified_email": True,
        "tags": "",
        "note": None,
        "tax_exempt": False,
        "created_at": "2025-11-02T09:15:00+05:30",
        "updated_at": "2026-01-15T10:30:00+05:30",
        "sms_marketing_consent": {
            "state": "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None,
            "consent_collected_from": "OTHER",
        },
        "email_marketing_consent": {
            "state": "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None,
        },
        "default_address": {**_address_payload("+91 98765 43210"), "default": True},
    }


def _address_payload(phone: str) -> dict[str, Any]:
    return {
        "first_name": "Asha",
        "last_name": "Rao",
        "name": "Asha Rao",
        "address1": "12 MG Road",
        "address2": "Flat 4B",
        "city": "Bengaluru",
        "province": "Karnataka",
        "province_code": "KA",
        "zip": "560001",
        "country": "India",
        "country_code": "IN",
        "phone": phone,
        "company": None,
        "latitude": 12.9716,
        "longitude": 77.5946,
    }


def _line_item_payload(title: str, price: str, sku: str) -> dict[str, Any]:
    item_id = next(_LINE_ITEM_IDS)
    return {
        "id": item_id,
        "admin_graphql_api_id": _gid("LineItem", item_id),
        "title": title,
        "name": title,
        "quantity": 1,
        "current_quantity": 1,
        "fulfillable_quantity": 1,
        "fulfillment_status": None,
        "price": price,
        "price_set": _rest_money_set(price),
        "total_discount": "0.00",
        "sku": sku,
        "vendor": "Demo Crafts",
        "product_id": 8_712_345_678_901,
        "variant_id": 45_612_345_678_901,
        "variant_title": None,
        "grams": 325,
        "requires_shipping": True,
        "taxable": True,
        "gift_card": False,
        "tax_lines": [],
        "discount_allocations": [],
    }


def _rest_money_set(amount: str) -> dict[str, Any]:
    money = {"amount": amount, "currency_code": "INR"}
    return {"shop_money": money, "presentment_money": dict(money)}


def _root_field(query: str) -> tuple[str, bool]:
    # The first field of the first selection set that is not a fragment definition.
    depth, header_start = 0, 0
    for index, char in enumerate(query):
        if char == "{":
            header = query[header_start:index].strip()
            if depth == 0 and not header.startswith("fragment"):
                match = _FIRST_FIELD.match(query, index + 1)
                return (match.group(1) if match else ""), header.startswith("mutation")
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                header_start = index + 1
    return "", False


def _query_hmac(params: dict[str, str], secret: str) -> str:
    def escape(text: str) -> str:
        return text.replace("%", "%25").replace("&", "%26")

    message = "&".join(
        f"{escape(key).replace('=', '%3D')}={escape(value)}"
        for key, value in sorted(params.items())
        if key not in ("hmac", "signature")
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _admin_host(shop: str) -> str:
    store = shop.split(".")[0]
    return base64.b64encode(f"admin.shopify.com/store/{store}".encode()).decode().rstrip("=")


def _throttled(spec: _Throttle) -> dict[str, Any]:
    cost = _cost(spec.requested_cost, None)
    cost["throttleStatus"]["currentlyAvailable"] = spec.currently_available
    cost["throttleStatus"]["restoreRate"] = spec.restore_rate
    error = {
        "message": "Throttled",
        "extensions": {
            "code": "THROTTLED",
            "documentation": "https://shopify.dev/api/usage/rate-limits",
        },
    }
    return {"errors": [error], "extensions": {"cost": cost}}


def _cost(requested: float, actual: float | None) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": 2000.0,
            "currentlyAvailable": 2000.0 - (actual or 0),
            "restoreRate": 100.0,
        },
    }


def _scopes(scope: str | None) -> frozenset[str] | None:
    """The granted scopes; a write scope grants its read scope too, as on Shopify."""
    if scope is None:
        return None
    granted = {name.strip() for name in scope.split(",") if name.strip()}
    return frozenset(granted | {f"read_{n[6:]}" for n in granted if n.startswith("write_")})


def _invalid_variable(name: str, graphql_type: str) -> str:
    return f"Variable ${name} of type {graphql_type} was provided invalid value"


def _webhook_result(node: dict[str, Any] | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"webhookSubscriptionCreate": {"webhookSubscription": node, "userErrors": errors}}


def _cancel_result(errors: list[dict[str, Any]]) -> dict[str, Any]:
    job = None if errors else {"id": f"gid://shopify/Job/{uuid.uuid4()}", "done": False}
    return {"orderCancel": {"job": job, "orderCancelUserErrors": errors, "userErrors": []}}


def _refund_result(node: dict[str, Any] | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"refundCreate": {"refund": node, "userErrors": errors}}


def _user_error(path: list[str], message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"field": path, "message": message}
    if code is not None:
        error["code"] = code
    return error


def _connection(
    edges: list[dict[str, Any]], *, has_next: bool, has_previous: bool
) -> dict[str, Any]:
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _customer_node(customer: dict[str, Any]) -> dict[str, Any]:
    consent = customer.get("sms_marketing_consent")
    phone, email = customer.get("phone"), customer.get("email")
    sms = None
    if isinstance(consent, dict):
        sms = {
            "marketingState": str(consent.get("state") or "not_subscribed").upper(),
            "marketingOptInLevel": (consent.get("opt_in_level") or "").upper() or None,
            "consentUpdatedAt": _graphql_time(consent.get("consent_updated_at")),
            "consentCollectedFrom": consent.get("consent_collected_from"),
        }
    return {
        "id": _gid("Customer", customer["id"]),
        "legacyResourceId": str(customer["id"]),
        "firstName": customer.get("first_name"),
        "lastName": customer.get("last_name"),
        "phone": phone,
        "email": email,
        "defaultPhoneNumber": {"phoneNumber": phone} if phone else None,
        "defaultEmailAddress": {"emailAddress": email} if email else None,
        "smsMarketingConsent": sms,
        "defaultAddress": _address_node(customer.get("default_address")),
    }


def _address_node(address: Any) -> dict[str, Any] | None:
    if not isinstance(address, dict):
        return None
    return {
        "name": address.get("name"),
        "firstName": address.get("first_name"),
        "lastName": address.get("last_name"),
        "address1": address.get("address1"),
        "address2": address.get("address2"),
        "city": address.get("city"),
        "province": address.get("province"),
        "provinceCode": address.get("province_code"),
        "zip": address.get("zip"),
        "country": address.get("country"),
        "countryCodeV2": address.get("country_code"),
        "phone": address.get("phone"),
        "company": address.get("company"),
    }


def _line_item_node(item: dict[str, Any], currency: Any) -> dict[str, Any]:
    return {
        "id": _gid("LineItem", item.get("id")),
        "title": item.get("title"),
        "name": item.get("name"),
        "sku": item.get("sku"),
        "quantity": item.get("quantity"),
        "originalUnitPriceSet": _money_bag(item.get("price"), currency),
    }


def _line_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    return [_dict(item) for item in order.get("line_items") or []]


def _refunded_quantity(order: dict[str, Any], line_item_id: Any) -> int:
    return sum(
        int(line.get("quantity") or 0)
        for refund in map(_dict, order.get("refunds") or [])
        for line in map(_dict, refund.get("refund_line_items") or [])
        if str(line.get("line_item_id")) == str(line_item_id)
    )


def _refundable_quantity(order: dict[str, Any], item: dict[str, Any]) -> int:
    return max(0, int(item.get("quantity") or 0) - _refunded_quantity(order, item.get("id")))


def _check_refund_lines(order: dict[str, Any], lines: list[Any]) -> list[dict[str, Any]]:
    items = {_gid("LineItem", item.get("id")): item for item in _line_items(order)}
    errors = []
    for index, line in enumerate(map(_dict, lines)):
        where = ["refundLineItems", str(index)]
        item = items.get(str(line.get("lineItemId")))
        quantity = line.get("quantity")
        if item is None:
            errors.append(_user_error([*where, "lineItemId"], "Line item does not exist"))
        elif not isinstance(quantity, int) or quantity < 1:
            errors.append(_user_error([*where, "quantity"], "Quantity must be greater than 0"))
        elif quantity > _refundable_quantity(order, item):
            message = "Quantity cannot refund more items than were purchased"
            errors.append(_user_error([*where, "quantity"], message))
    return errors


# A REST fulfillment's shipment_status (its latest carrier event) as GraphQL's displayStatus.
_DISPLAY_STATUS = {
    None: "FULFILLED",
    "label_printed": "LABEL_PRINTED",
    "label_purchased": "LABEL_PURCHASED",
    "confirmed": "CONFIRMED",
    "carrier_picked_up": "CARRIER_PICKED_UP",
    "in_transit": "IN_TRANSIT",
    "out_for_delivery": "OUT_FOR_DELIVERY",
    "ready_for_pickup": "READY_FOR_PICKUP",
    "picked_up": "PICKED_UP",
    "attempted_delivery": "ATTEMPTED_DELIVERY",
    "delayed": "DELAYED",
    "delivered": "DELIVERED",
    "failure": "FAILURE",
}


def _fulfillment_node(fulfillment: dict[str, Any]) -> dict[str, Any]:
    """A stored REST fulfillment as a GraphQL Fulfillment; the dates Shopify learns from
    carrier events (`estimated_delivery_at`, `in_transit_at`, `delivered_at`) are kept on it."""
    status = str(fulfillment.get("status") or "success").upper()
    shipment = fulfillment.get("shipment_status")
    numbers = fulfillment.get("tracking_numbers") or [fulfillment.get("tracking_number")]
    urls = fulfillment.get("tracking_urls") or [fulfillment.get("tracking_url")]
    tracking = [
        {"company": fulfillment.get("tracking_company"), "number": number, "url": url}
        for number, url in zip(numbers, urls, strict=False)
        if number or url
    ]
    return {
        "id": _gid("Fulfillment", fulfillment.get("id")),
        "status": status,
        "displayStatus": "CANCELED"
        if status == "CANCELLED"
        else _DISPLAY_STATUS.get(shipment, str(shipment).upper()),
        "estimatedDeliveryAt": _graphql_time(fulfillment.get("estimated_delivery_at")),
        "inTransitAt": _graphql_time(fulfillment.get("in_transit_at")),
        "deliveredAt": _graphql_time(fulfillment.get("delivered_at")),
        "trackingInfo": tracking,
        "fulfillmentLineItems": _connection(
            [
                {
                    "cursor": str(item.get("id")),
                    "node": {
                        "id": _gid("FulfillmentLineItem", item.get("id")),
                        "quantity": item.get("quantity"),
                        "lineItem": {"id": _gid("LineItem", item.get("id"))},
                    },
                }
                for item in map(_dict, fulfillment.get("line_items") or [])
            ],
            has_next=False,
            has_previous=False,
        ),
    }


def _transaction_node(transaction: dict[str, Any], currency: Any) -> dict[str, Any]:
    return {
        "id": transaction["id"],
        "kind": transaction["kind"],
        "status": transaction["status"],
        "gateway": transaction["gateway"],
        "amountSet": _money_bag(transaction["amount"], currency),
        "parentTransaction": {"id": transaction["parentId"]} if transaction["parentId"] else None,
    }


def _money_bag(amount: Any, currency: Any) -> dict[str, Any] | None:
    value = _graphql_money(amount)
    if value is None:
        return None
    money = {"amount": value, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": dict(money)}


def _graphql_money(amount: Any) -> str | None:
    # Shopify's Money scalar drops trailing zeros: "388.00" is sent as "388.0".
    value = _decimal(amount)
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def _decimal(amount: Any) -> Decimal | None:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _graphql_time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _instant(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _order_key(order: dict[str, Any]) -> tuple[datetime, int]:
    return _instant(order["updated_at"]), int(order["id"])


def _cursor(order: dict[str, Any]) -> str:
    updated, order_id = _order_key(order)
    return base64.urlsafe_b64encode(json.dumps([updated.isoformat(), order_id]).encode()).decode()


def _decode_cursor(cursor: Any) -> tuple[datetime, int]:
    try:
        updated, order_id = json.loads(base64.urlsafe_b64decode(str(cursor)))
        return _instant(updated), int(order_id)
    except (ValueError, TypeError):
        raise _GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from None


def _split_tags(tags: Any) -> list[str]:
    if isinstance(tags, list):
        return [str(tag).strip() for tag in tags if str(tag).strip()]
    return [tag.strip() for tag in str(tags or "").split(",") if tag.strip()]


def _digits(phone: Any) -> str:
    return re.sub(r"[^0-9]", "", str(phone or ""))


def _gid(kind: str, number: Any) -> str:
    return f"gid://shopify/{kind}/{number}"


def _legacy(gid: str) -> int | None:
    number = gid.rsplit("/", 1)[-1]
    return int(number) if number.isdigit() else None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
