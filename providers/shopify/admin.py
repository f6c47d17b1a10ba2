"""Shopify Admin GraphQL client (aiohttp, no SDK); failures are ProviderErrors with retry advice.

Written for API version 2025-10 and later; values travel only as GraphQL variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp

from providers.base import ProviderError
from providers.http import exchange

ORDER_FIELDS = """
fragment OrderFields on Order {
  id name number createdAt updatedAt cancelledAt currencyCode
  totalPriceSet { shopMoney { amount currencyCode } }
  displayFinancialStatus displayFulfillmentStatus paymentGatewayNames tags phone email
  statusPageUrl
  customer {
    id firstName lastName
    defaultPhoneNumber { phoneNumber }
    defaultEmailAddress { emailAddress }
    smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
    defaultAddress { phone countryCodeV2 }
  }
  shippingAddress { name address1 city province zip countryCodeV2 phone }
  billingAddress { phone countryCodeV2 }
  lineItems(first: 10) {
    nodes { id title quantity originalUnitPriceSet { shopMoney { amount } } }
  }
}
"""

CUSTOMER_FIELDS = """
fragment CustomerFields on Customer {
  id firstName lastName
  defaultPhoneNumber { phoneNumber }
  defaultEmailAddress { emailAddress }
  smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }
  defaultAddress { phone countryCodeV2 }
}
"""

SHOP_QUERY = """
query ShopInfo {
  shop { name email currencyCode ianaTimezone billingAddress { phone countryCodeV2 } }
  shopLocales { locale primary }
}
"""

WEBHOOK_CREATE = """
mutation WebhookSubscriptionCreate(
  $topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic }
    userErrors { field message }
  }
}
"""

TAGS_ADD = """
mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}
"""

TAGS_REMOVE = """
mutation TagsRemove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { node { id } userErrors { field message } }
}
"""

ORDER_CANCEL = """
mutation OrderCancel(
  $orderId: ID!, $notifyCustomer: Boolean, $refundMethod: OrderCancelRefundMethodInput!,
  $restock: Boolean!, $reason: OrderCancelReason!, $staffNote: String
) {
  orderCancel(
    orderId: $orderId, notifyCustomer: $notifyCustomer, refundMethod: $refundMethod,
    restock: $restock, reason: $reason, staffNote: $staffNote
  ) {
    job { id done }
    orderCancelUserErrors { field message code }
    userErrors { field message }
  }
}
"""

REFUND_SUGGESTION = """
query RefundSuggestion(
  $id: ID!, $refundLineItems: [RefundLineItemInput!], $suggestFullRefund: Boolean
) {
  order(id: $id) {
    id
    suggestedRefund(refundLineItems: $refundLineItems, suggestFullRefund: $suggestFullRefund) {
      amountSet { shopMoney { amount currencyCode } }
      maximumRefundableSet { shopMoney { amount currencyCode } }
      suggestedTransactions {
        gateway kind
        parentTransaction { id }
        maximumRefundableSet { shopMoney { amount } }
      }
    }
  }
}
"""

# The order card's live view: statuses, what is left to refund, and every shipment with its
# tracking and the lines it carries.
ORDER_DETAILS = """
query OrderDetails($id: ID!) {
  order(id: $id) {
    id name closed closedAt cancelledAt currencyCode
    displayFinancialStatus displayFulfillmentStatus
    totalPriceSet { shopMoney { amount currencyCode } }
    totalRefundedSet { shopMoney { amount currencyCode } }
    lineItems(first: 25) {
      nodes { id title quantity refundableQuantity originalUnitPriceSet { shopMoney { amount } } }
    }
    fulfillments(first: 10) {
      id status displayStatus estimatedDeliveryAt inTransitAt deliveredAt
      trackingInfo(first: 3) { company number url }
      fulfillmentLineItems(first: 25) { nodes { quantity lineItem { id } } }
    }
  }
}
"""

REFUND_CREATE = """
mutation RefundCreate($input: RefundInput!) {
  refundCreate(input: $input) {
    refund { id totalRefundedSet { presentmentMoney { amount currencyCode } } }
    userErrors { field message }
  }
}
"""

ORDER_QUERY = (
    """
query Order($id: ID!) {
  order(id: $id) { ...OrderFields }
}
"""
    + ORDER_FIELDS
)

ORDERS_QUERY = (
    """
query OrdersUpdatedSince($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { ...OrderFields }
    pageInfo { hasNextPage endCursor }
  }
}
"""
    + ORDER_FIELDS
)

CUSTOMERS_QUERY = (
    """
query CustomerByPhone($query: String!) {
  customers(first: 1, query: $query) { nodes { ...CustomerFields } }
}
"""
    + CUSTOMER_FIELDS
)

SMS_CONSENT_UPDATE = """
mutation CustomerSmsMarketingConsentUpdate($input: CustomerSmsMarketingConsentUpdateInput!) {
  customerSmsMarketingConsentUpdate(input: $input) {
    customer { id smsMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt } }
    userErrors { field message }
  }
}
"""

# Requested cost of one orders page: 2 + page_size x ~42 (10 line items). Shopify refuses a
# single query above 1000 points, so a page holds at most 23 orders.
MAX_ORDERS_PAGE = 23

_FULFILLMENT_STATUS = {
    "FULFILLED": "fulfilled",
    "PARTIALLY_FULFILLED": "partial",
    "RESTOCKED": "restocked",
}
_ALREADY_TAKEN = re.compile(r"already been taken", re.IGNORECASE)
_ALREADY_CANCELLED = re.compile(r"already\s+(been\s+)?cancel", re.IGNORECASE)
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class ShopInfo:
    """The shop's name, owner email, currency, time zone, billing phone and country, and its
    primary locale (e.g. "en", "hi")."""

    name: str
    email: str
    currency: str
    iana_timezone: str
    phone: str
    country_code: str
    primary_locale: str = ""


@dataclass(frozen=True)
class RefundablePayment:
    """A captured payment a refund can go back to, and how much of it is left."""

    parent_id: str
    gateway: str
    maximum: str


@dataclass(frozen=True)
class SuggestedRefund:
    """Shopify's suggestedRefund: the amount for the lines asked about (everything left when
    none were), the most that can still be refunded, and the payments it goes back to."""

    amount: str
    maximum: str
    currency: str
    payments: tuple[RefundablePayment, ...]


@dataclass(frozen=True)
class LineItemDetail:
    """One line of an order: `refundable` of its `quantity` can still be refunded."""

    id: str
    title: str
    quantity: int
    refundable: int
    unit_price: str


@dataclass(frozen=True)
class Tracking:
    company: str
    number: str
    url: str


@dataclass(frozen=True)
class FulfillmentDetail:
    """One shipment: Shopify's status and display status (IN_TRANSIT, DELIVERED, ...), its
    dates, tracking, and the lines it carries as (line item id, quantity)."""

    status: str
    display_status: str
    estimated_delivery_at: datetime | None
    in_transit_at: datetime | None
    delivered_at: datetime | None
    tracking: tuple[Tracking, ...]
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class OrderDetails:
    """An order as Shopify holds it now: archived (`closed`), cancelled, its payment and
    fulfilment display statuses (lower case: "partially_refunded", "in_progress"), money,
    lines and shipments."""

    name: str
    closed: bool
    closed_at: datetime | None
    cancelled_at: datetime | None
    financial_status: str
    fulfillment_status: str
    total: str
    refunded: str
    currency: str
    line_items: tuple[LineItemDetail, ...]
    fulfillments: tuple[FulfillmentDetail, ...]


class ShopifyAdmin:
    """Calls one Admin GraphQL endpoint per shop, with the shop's access token."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        admin_url_template: str,
        api_version: str,
        *,
        timeout_seconds: float = 15.0,
    ) -> None:
        self._http = http
        self._template = admin_url_template
        self._version = api_version
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def endpoint(self, shop: str) -> str:
        """The shop's GraphQL URL."""
        return self._template.replace("{shop}", shop).replace("{version}", self._version)

    async def graphql(
        self, shop: str, token: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one query or mutation and return its `data`; failures are ProviderError."""
        body = {"query": query, "variables": variables or {}}
        headers = {"X-Shopify-Access-Token": token}
        answer = await exchange(
            self._http,
            "POST",
            self.endpoint(shop),
            f"shopify {shop}",
            client_timeout=self._timeout,
            json=body,
            headers=headers,
        )
        return _data(shop, answer.status, answer.retry_after, answer.text)

    async def shop_info(self, shop: str, token: str) -> ShopInfo:
        """The shop's own settings, read once when it connects."""
        data = await self.graphql(shop, token, SHOP_QUERY)
        info = _field(data, "shop")
        locales = data.get("shopLocales")
        address = _dict(info.get("billingAddress"))
        return ShopInfo(
            name=_str(info.get("name")),
            email=_str(info.get("email")),
            currency=_str(info.get("currencyCode")),
            iana_timezone=_str(info.get("ianaTimezone")),
            phone=_str(address.get("phone")),
            country_code=_str(address.get("countryCodeV2")),
            primary_locale=next(
                (
                    _str(_dict(locale).get("locale"))
                    for locale in (locales if isinstance(locales, list) else [])
                    if _dict(locale).get("primary")
                ),
                "",
            ),
        )

    async def register_webhook(self, shop: str, token: str, topic: str, uri: str) -> None:
        """Subscribe `uri` to `topic` ("orders/create"); an existing subscription is success."""
        variables = {
            "topic": webhook_topic_enum(topic),
            "webhookSubscription": {"uri": uri, "format": "JSON"},
        }
        data = await self.graphql(shop, token, WEBHOOK_CREATE, variables)
        errors = _list(_field(data, "webhookSubscriptionCreate").get("userErrors"))
        if errors and all(_ALREADY_TAKEN.search(_message(error)) for error in errors):
            return
        _raise_user_errors(errors, f"webhookSubscriptionCreate {topic}")

    async def add_tags(self, shop: str, token: str, order_id: str, tags: list[str]) -> None:
        """Add tags to an order (Shopify ignores tags it already has)."""
        await self._tags(shop, token, TAGS_ADD, "tagsAdd", order_id, tags)

    async def remove_tags(self, shop: str, token: str, order_id: str, tags: list[str]) -> None:
        """Remove tags from an order (absent tags are no error)."""
        await self._tags(shop, token, TAGS_REMOVE, "tagsRemove", order_id, tags)

    async def _tags(
        self, shop: str, token: str, mutation: str, root: str, order_id: str, tags: list[str]
    ) -> None:
        variables = {"id": order_gid(order_id), "tags": list(tags)}
        data = await self.graphql(shop, token, mutation, variables)
        _raise_user_errors(_list(_field(data, root).get("userErrors")), root)

    async def cancel_order(
        self,
        shop: str,
        token: str,
        order_id: str,
        *,
        reason: str = "CUSTOMER",
        refund: bool,
        restock: bool,
        notify_customer: bool,
        staff_note: str = "",
    ) -> None:
        """Start cancelling an order (Shopify finishes it in a background job)."""
        variables = {
            "orderId": order_gid(order_id),
            "notifyCustomer": notify_customer,
            "refundMethod": {"originalPaymentMethodsRefund": refund},
            "restock": restock,
            "reason": reason,
            "staffNote": staff_note[:255] or None,
        }
        payload = _field(await self.graphql(shop, token, ORDER_CANCEL, variables), "orderCancel")
        errors = _list(payload.get("orderCancelUserErrors")) + _list(payload.get("userErrors"))
        if any(_already_cancelled(error) for error in errors):
            raise ProviderError(
                f"shopify orderCancel: {_describe(errors)}",
                retryable=False,
                code="ALREADY_CANCELLED",
            )
        if any(_dict(error).get("code") == "NOT_FOUND" for error in errors):
            raise ProviderError(
                f"shopify orderCancel: {_describe(errors)}", retryable=False, code="NOT_FOUND"
            )
        _raise_user_errors(errors, "orderCancel")

    async def refund_order(
        self,
        shop: str,
        token: str,
        order_id: str,
        *,
        amount: str,
        currency: str,
        note: str,
        notify: bool,
        lines: Sequence[tuple[str, int]] = (),
    ) -> str:
        """Refund `amount` to the order's captured payments (and record `lines`, pairs of line
        item id and quantity, as refunded, not restocked); returns the refund's id.

        Shopify's suggestedRefund names the payments to refund and what each still holds: the
        amount goes to them in turn, any excess to the last, for Shopify to refuse. An order
        with no captured payment (cash on delivery not yet paid) cannot be refunded.
        """
        if not _AMOUNT.fullmatch(amount) or Decimal(amount) <= 0:
            raise ProviderError(
                f"refund amount {amount!r} is not a positive decimal",
                retryable=False,
                code="INVALID_AMOUNT",
            )
        gid = order_gid(order_id)
        suggestion = await self.suggest_refund(shop, token, gid, lines)
        if not suggestion.payments:
            raise ProviderError(
                f"shopify: order {gid} has no captured payment to refund",
                retryable=False,
                code="NOT_REFUNDABLE",
            )
        refund_input: dict[str, Any] = {
            "orderId": gid,
            "note": note,
            "notify": notify,
            "currency": currency,
            "transactions": [
                {
                    "orderId": gid,
                    "parentId": payment.parent_id,
                    "gateway": payment.gateway,
                    "kind": "REFUND",
                    "amount": share,
                }
                for payment, share in _allocate(Decimal(amount), suggestion.payments)
            ],
        }
        if lines:
            refund_input["refundLineItems"] = _refund_lines(lines)
        data = await self.graphql(shop, token, REFUND_CREATE, {"input": refund_input})
        payload = _field(data, "refundCreate")
        _raise_user_errors(_list(payload.get("userErrors")), "refundCreate")
        return _str(_dict(payload.get("refund")).get("id"))

    async def suggest_refund(
        self, shop: str, token: str, order_id: str, lines: Sequence[tuple[str, int]] = ()
    ) -> SuggestedRefund:
        """What Shopify would refund for `lines` (pairs of line item id and quantity), or for
        everything left when there are none, and the payments it would go back to."""
        gid = order_gid(order_id)
        variables: dict[str, Any] = {"id": gid, "suggestFullRefund": not lines}
        if lines:
            variables["refundLineItems"] = _refund_lines(lines)
        order = (await self.graphql(shop, token, REFUND_SUGGESTION, variables)).get("order")
        if not isinstance(order, dict):
            raise ProviderError(f"shopify: no order {gid}", retryable=False, code="NOT_FOUND")
        suggested = _dict(order.get("suggestedRefund"))
        amount = _shop_money(suggested.get("amountSet"))
        payments = tuple(
            RefundablePayment(
                parent_id=_str(_dict(item.get("parentTransaction")).get("id")),
                gateway=_str(item.get("gateway")),
                maximum=_amount(_shop_money(item.get("maximumRefundableSet"))),
            )
            for item in map(_dict, _list(suggested.get("suggestedTransactions")))
            if _dict(item.get("parentTransaction")).get("id")
        )
        return SuggestedRefund(
            amount=_amount(amount),
            maximum=_amount(_shop_money(suggested.get("maximumRefundableSet"))),
            currency=_str(amount.get("currencyCode")),
            payments=payments,
        )

    async def order_details(self, shop: str, token: str, order_id: str) -> OrderDetails | None:
        """The order as its card shows it, live; None if Shopify has no such order."""
        data = await self.graphql(shop, token, ORDER_DETAILS, {"id": order_gid(order_id)})
        node = data.get("order")
        return order_details(node) if isinstance(node, dict) else None

    async def get_order(self, shop: str, token: str, order_id: str) -> dict[str, Any] | None:
        """The order in the webhook / REST payload shape, or None if Shopify has none."""
        data = await self.graphql(shop, token, ORDER_QUERY, {"id": order_gid(order_id)})
        node = data.get("order")
        return rest_order(node) if isinstance(node, dict) else None

    async def orders_updated_since(
        self,
        shop: str,
        token: str,
        since: datetime,
        cursor: str | None = None,
        page_size: int = 20,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of orders updated after `since`, oldest first, and the next page's cursor.

        Orders come in the webhook / REST payload shape, for the same path as webhooks. A page
        holds at most MAX_ORDERS_PAGE orders, whatever `page_size` asks.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        variables = {
            "first": min(page_size, MAX_ORDERS_PAGE),
            "after": cursor,
            "query": f"updated_at:>'{_search_time(since)}'",
        }
        orders = _field(await self.graphql(shop, token, ORDERS_QUERY, variables), "orders")
        page = _dict(orders.get("pageInfo"))
        next_cursor = page.get("endCursor") if page.get("hasNextPage") else None
        nodes = [rest_order(node) for node in map(_dict, _list(orders.get("nodes")))]
        return nodes, next_cursor if isinstance(next_cursor, str) else None

    async def find_customer_by_phone(
        self, shop: str, token: str, phone: str
    ) -> dict[str, Any] | None:
        """The customer with this E.164 phone, in the REST customer shape, or None."""
        if not _E164.fullmatch(phone):
            raise ProviderError(
                f"{phone!r} is not an E.164 phone", retryable=False, code="INVALID_PHONE"
            )
        data = await self.graphql(shop, token, CUSTOMERS_QUERY, {"query": f"phone:{phone}"})
        nodes = _list(_field(data, "customers").get("nodes"))
        return rest_customer(nodes[0]) if nodes and isinstance(nodes[0], dict) else None

    async def update_sms_consent(
        self, shop: str, token: str, customer_id: str, *, subscribed: bool, updated_at: datetime
    ) -> None:
        """Record the customer's SMS marketing consent (single opt-in) in Shopify."""
        consent = {
            "marketingState": "SUBSCRIBED" if subscribed else "UNSUBSCRIBED",
            "marketingOptInLevel": "SINGLE_OPT_IN",
            "consentUpdatedAt": _graphql_time(updated_at),
        }
        variables = {
            "input": {"customerId": customer_gid(customer_id), "smsMarketingConsent": consent}
        }
        data = await self.graphql(shop, token, SMS_CONSENT_UPDATE, variables)
        payload = _field(data, "customerSmsMarketingConsentUpdate")
        _raise_user_errors(_list(payload.get("userErrors")), "customerSmsMarketingConsentUpdate")


def webhook_topic_enum(topic: str) -> str:
    """The GraphQL enum of a webhook topic: "orders/create" -> "ORDERS_CREATE"."""
    return topic.upper().replace("/", "_")


def order_gid(order_id: str) -> str:
    """An order's GraphQL id from its numeric id (a gid passes through)."""
    return _gid("Order", order_id)


def customer_gid(customer_id: str) -> str:
    """A customer's GraphQL id from its numeric id (a gid passes through)."""
    return _gid("Customer", customer_id)


def _gid(kind: str, value: str) -> str:
    prefix = f"gid://shopify/{kind}/"
    number = value.removeprefix(prefix)
    if not (number.isascii() and number.isdigit()):
        raise ValueError(f"not a Shopify {kind} id: {value!r}")
    return prefix + number


def rest_order(node: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL Order node in the webhook / REST payload shape that parse_order reads."""
    total = _dict(_dict(node.get("totalPriceSet")).get("shopMoney"))
    number = node.get("number")
    fulfillment = node.get("displayFulfillmentStatus")
    financial = node.get("displayFinancialStatus")
    customer = node.get("customer")
    shipping = node.get("shippingAddress")
    billing = node.get("billingAddress")
    return {
        "id": _legacy_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        # GraphQL `number` is REST's order_number (#1001); REST `number` counts from 1.
        "order_number": number,
        "number": number - 1000 if isinstance(number, int) and number > 1000 else number,
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "currency": node.get("currencyCode"),
        "total_price": _rest_money(total.get("amount")),
        "financial_status": financial.lower() if isinstance(financial, str) else None,
        "fulfillment_status": _FULFILLMENT_STATUS.get(str(fulfillment)),
        "payment_gateway_names": _list(node.get("paymentGatewayNames")),
        "tags": ", ".join(tag for tag in _list(node.get("tags")) if isinstance(tag, str)),
        "phone": node.get("phone"),
        "email": node.get("email"),
        "customer": rest_customer(customer) if isinstance(customer, dict) else None,
        "shipping_address": _rest_address(shipping) if isinstance(shipping, dict) else None,
        "billing_address": _rest_address(billing) if isinstance(billing, dict) else None,
        "line_items": [_rest_line_item(item) for item in map(_dict, _line_items(node))],
        "order_status_url": node.get("statusPageUrl"),
    }


def order_details(node: dict[str, Any]) -> OrderDetails:
    """The OrderDetails of a GraphQL Order node (ORDER_DETAILS' selection)."""
    total = _shop_money(node.get("totalPriceSet"))
    return OrderDetails(
        name=_str(node.get("name")),
        closed=node.get("closed") is True,
        closed_at=_optional_time(node.get("closedAt")),
        cancelled_at=_optional_time(node.get("cancelledAt")),
        financial_status=_str(node.get("displayFinancialStatus")).lower(),
        fulfillment_status=_str(node.get("displayFulfillmentStatus")).lower(),
        total=_amount(total),
        refunded=_amount(_shop_money(node.get("totalRefundedSet"))),
        currency=_str(total.get("currencyCode")),
        line_items=tuple(
            LineItemDetail(
                id=_str(item.get("id")),
                title=_str(item.get("title")),
                quantity=_count(item.get("quantity")),
                refundable=_count(item.get("refundableQuantity")),
                unit_price=_amount(_shop_money(item.get("originalUnitPriceSet"))),
            )
            for item in map(_dict, _line_items(node))
        ),
        fulfillments=tuple(
            _fulfillment_detail(fulfillment)
            for fulfillment in map(_dict, _list(node.get("fulfillments")))
        ),
    )


def _fulfillment_detail(node: dict[str, Any]) -> FulfillmentDetail:
    return FulfillmentDetail(
        status=_str(node.get("status")),
        display_status=_str(node.get("displayStatus")),
        estimated_delivery_at=_optional_time(node.get("estimatedDeliveryAt")),
        in_transit_at=_optional_time(node.get("inTransitAt")),
        delivered_at=_optional_time(node.get("deliveredAt")),
        tracking=tuple(
            Tracking(
                company=_str(info.get("company")),
                number=_str(info.get("number")),
                url=_str(info.get("url")),
            )
            for info in map(_dict, _list(node.get("trackingInfo")))
        ),
        lines=tuple(
            (_str(_dict(item.get("lineItem")).get("id")), _count(item.get("quantity")))
            for item in map(_dict, _list(_dict(node.get("fulfillmentLineItems")).get("nodes")))
        ),
    )


def line_item_gid(line_item_id: str) -> str:
    """A line item's GraphQL id from its numeric id (a gid passes through)."""
    return _gid("LineItem", line_item_id)


def _refund_lines(lines: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [
        {"lineItemId": line_item_gid(item), "quantity": quantity, "restockType": "NO_RESTOCK"}
        for item, quantity in lines
    ]


def _allocate(
    amount: Decimal, payments: Sequence[RefundablePayment]
) -> list[tuple[RefundablePayment, str]]:
    """`amount` spread over the payments in turn, each up to what it holds; the excess goes
    to the last one (Shopify refuses a refund above what is left)."""
    shares: list[tuple[RefundablePayment, str]] = []
    left = amount
    for index, payment in enumerate(payments):
        last = index == len(payments) - 1
        share = left if last else min(left, Decimal(payment.maximum))
        if share > 0:
            shares.append((payment, f"{share:.2f}"))
        left -= share
    return shares


def _shop_money(money_bag: Any) -> dict[str, Any]:
    return _dict(_dict(money_bag).get("shopMoney"))


def _optional_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def rest_customer(node: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL Customer node in the REST customer shape."""
    consent = node.get("smsMarketingConsent")
    address = node.get("defaultAddress")
    return {
        "id": _legacy_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "first_name": node.get("firstName"),
        "last_name": node.get("lastName"),
        "phone": _dict(node.get("defaultPhoneNumber")).get("phoneNumber"),
        "email": _dict(node.get("defaultEmailAddress")).get("emailAddress"),
        "sms_marketing_consent": _rest_consent(consent) if isinstance(consent, dict) else None,
        "default_address": _rest_address(address) if isinstance(address, dict) else None,
    }


def _rest_consent(consent: dict[str, Any]) -> dict[str, Any]:
    state = consent.get("marketingState")
    level = consent.get("marketingOptInLevel")
    return {
        "state": state.lower() if isinstance(state, str) else None,
        "opt_in_level": level.lower() if isinstance(level, str) else None,
        "consent_updated_at": consent.get("consentUpdatedAt"),
    }


def _rest_address(address: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": address.get("name"),
        "address1": address.get("address1"),
        "city": address.get("city"),
        "province": address.get("province"),
        "zip": address.get("zip"),
        "country_code": address.get("countryCodeV2"),
        "phone": address.get("phone"),
    }


def _rest_line_item(item: dict[str, Any]) -> dict[str, Any]:
    price = _dict(_dict(item.get("originalUnitPriceSet")).get("shopMoney")).get("amount")
    return {
        "id": _legacy_id(item.get("id")),
        "title": item.get("title"),
        "quantity": item.get("quantity"),
        "price": _rest_money(price),
    }


def _line_items(node: dict[str, Any]) -> list[Any]:
    return _list(_dict(node.get("lineItems")).get("nodes"))


def _legacy_id(gid: Any) -> int | None:
    if not isinstance(gid, str):
        return None
    number = gid.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(number) if number.isascii() and number.isdigit() else None


def _amount(money: dict[str, Any]) -> str:
    """A Money's amount as a decimal string ("0.00" when Shopify sent none)."""
    amount = money.get("amount")
    return _rest_money(amount) if isinstance(amount, str) and _AMOUNT.fullmatch(amount) else "0.00"


def _rest_money(amount: Any) -> Any:
    # GraphQL writes "388.0" where REST writes "388.00".
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        return amount
    value = Decimal(amount)
    exponent = value.as_tuple().exponent
    return f"{value:.2f}" if isinstance(exponent, int) and exponent > -2 else amount


def _search_time(moment: datetime) -> str:
    # Whole seconds round down, so `>` can only re-include an order, never skip one.
    if moment.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _graphql_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("updated_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _data(shop: str, status: int, retry_after: str | None, text: str) -> dict[str, Any]:
    body = _json_object(text)
    errors = _errors(body)
    where = f"shopify {shop}"
    if status in (401, 403):
        raise ProviderError(
            f"{where}: HTTP {status}: {_describe(errors) or text[:200]}",
            retryable=False,
            code="UNAUTHORIZED",
        )
    if status == 429 or any(_error_code(error) == "THROTTLED" for error in errors):
        wait = _seconds(retry_after) if status == 429 else None
        raise ProviderError(
            f"{where}: throttled",
            retryable=True,
            code="THROTTLED",
            retry_after=wait if wait is not None else _throttle_wait(body),
        )
    if status >= 500:
        raise ProviderError(f"{where}: HTTP {status}", retryable=True, code=f"HTTP_{status}")
    if not 200 <= status < 300:
        raise ProviderError(
            f"{where}: HTTP {status}: {_describe(errors) or text[:200]}",
            retryable=False,
            code=f"HTTP_{status}",
        )
    if errors:
        codes = {_error_code(error) for error in errors}
        code = "GRAPHQL"
        if "INTERNAL_SERVER_ERROR" in codes:
            code = "INTERNAL"
        elif "ACCESS_DENIED" in codes:  # the token lacks a scope the operation needs
            code = "ACCESS_DENIED"
        raise ProviderError(
            f"{where}: {_describe(errors)}", retryable=code == "INTERNAL", code=code
        )
    data = body.get("data") if body is not None else None
    if not isinstance(data, dict):
        raise ProviderError(f"{where}: answer has no data", retryable=False, code="BAD_RESPONSE")
    return data


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _errors(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    # A list of GraphQL errors, or (on 401 and friends) one string or object.
    raw = (body or {}).get("errors")
    if not raw:
        return []
    if isinstance(raw, list):
        return [item if isinstance(item, dict) else {"message": str(item)} for item in raw]
    return [{"message": raw if isinstance(raw, str) else json.dumps(raw)}]


def _error_code(error: dict[str, Any]) -> Any:
    return _dict(error.get("extensions")).get("code")


def _throttle_wait(body: dict[str, Any] | None) -> float | None:
    cost = _dict(_dict((body or {}).get("extensions")).get("cost"))
    bucket = _dict(cost.get("throttleStatus"))
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(bucket["currentlyAvailable"])
        restore_rate = float(bucket["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return None
    if restore_rate <= 0:
        return None
    return max(1.0, (requested - available) / restore_rate)


def _seconds(header: str | None) -> float | None:
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _already_cancelled(error: Any) -> bool:
    error = _dict(error)
    return "ALREADY" in str(error.get("code", "")) or bool(
        _ALREADY_CANCELLED.search(_message(error))
    )


def _raise_user_errors(errors: list[Any], operation: str) -> None:
    if errors:
        raise ProviderError(
            f"shopify {operation}: {_describe(errors)}", retryable=False, code="USER_ERROR"
        )


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in map(_dict, errors):
        field = ".".join(str(part) for part in _list(error.get("field")))
        parts.append(f"{field}: {_message(error)}" if field else _message(error))
    return "; ".join(parts)


def _message(error: Any) -> str:
    return str(_dict(error).get("message", ""))


def _field(data: dict[str, Any], root: str) -> dict[str, Any]:
    value = data.get(root)
    if not isinstance(value, dict):
        raise ProviderError(f"shopify: answer has no {root}", retryable=False, code="BAD_RESPONSE")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
