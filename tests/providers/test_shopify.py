"""The Shopify provider against the fake Shopify over real HTTP on loopback: signatures, OAuth,
the Admin GraphQL client and its error classes, and order mapping."""

from __future__ import annotations

import contextlib
import copy
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from providers.base import ProviderError
from providers.sandbox.shopify import FakeShopify, order_payload
from providers.shopify.admin import MAX_ORDERS_PAGE, ShopifyAdmin, ShopInfo
from providers.shopify.oauth import (
    authorize_url,
    exchange_code,
    valid_shop_domain,
    verify_query_hmac,
)
from providers.shopify.orders import (
    NO_PHONE,
    NO_VALID_PHONE,
    CustomerData,
    LineItem,
    parse_order,
)
from providers.shopify.webhooks import (
    SUBSCRIBED_TOPICS,
    WebhookDelivery,
    parse_delivery,
    verify_webhook,
)

SHOP = "demo.myshopify.com"
TOKEN = "shpat_demo_token"
API_KEY = "test-api-key"
API_SECRET = "test-api-secret"
CALLBACK = "https://ordertalk.example/shopify/callback"
HOOK_URL = "https://ordertalk.example/webhooks/shopify"

# Shopify's test-webhook order (wire-formats.md section 1.2).
SAMPLE_ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "name": "#9999",
    "number": 234,
    "order_number": 1234,
    "created_at": "2021-12-31T19:00:00-05:00",
    "currency": "USD",
    "total_price": "388.00",
    "financial_status": "voided",
    "fulfillment_status": None,
    "payment_gateway_names": ["visa", "bogus"],
    "phone": None,
    "email": "jon@example.com",
    "tags": "tag1, tag2",
    "cancelled_at": "2021-12-31T19:00:00-05:00",
    "customer": {
        "id": 115310627314723954,
        "email": "john@example.com",
        "first_name": "John",
        "last_name": "Smith",
        "phone": None,
        "default_address": {"phone": "123-123-1234", "country_code": "CA"},
    },
    "billing_address": {"phone": "555-555-SHIP", "country_code": "US"},
    "shipping_address": {"city": "Shippington", "country_code": "US", "phone": "555-555-SHIP"},
    "line_items": [
        {"id": 866550311766439020, "title": "IPod Nano - 8GB", "quantity": 1, "price": "199.00"}
    ],
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeShopify]:
    shopify = FakeShopify(api_key=API_KEY, api_secret=API_SECRET)
    await shopify.start()
    shopify.add_shop(
        SHOP,
        TOKEN,
        name="Demo Store",
        currency="INR",
        iana_timezone="Asia/Kolkata",
        phone="+912240001234",
        country_code="IN",
        email="owner@demo.example",
        locale="hi",
    )
    yield shopify
    await shopify.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def admin(http: aiohttp.ClientSession, fake: FakeShopify) -> ShopifyAdmin:
    return ShopifyAdmin(http, fake.admin_url_template, "2025-10")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[bytes, Any]]]]:
    """An app endpoint on loopback that keeps each delivery's raw body and headers."""
    inbox: list[tuple[bytes, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        inbox.append((await request.read(), request.headers))
        return web.json_response({"status": "stored"})

    app = web.Application()
    app.router.add_post("/webhooks/shopify", handle)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/webhooks/shopify")), inbox
    await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def expect_error(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    return caught.value


# Webhook signatures and headers -------------------------------------------------------------


async def test_signed_delivery_verifies_and_parses(fake, receiver):
    url, inbox = receiver
    fired = datetime(2026, 6, 13, 23, 45, 10, 123456, tzinfo=UTC)
    status = await fake.send_webhook(
        url,
        "orders/create",
        SHOP,
        order_payload(),
        webhook_id="wh-1",
        event_id="ev-1",
        triggered_at=fired,
    )
    assert status == 200
    body, headers = inbox[0]
    assert verify_webhook(body, headers.get("X-Shopify-Hmac-Sha256"), API_SECRET)
    assert parse_delivery(headers) == WebhookDelivery(
        topic="orders/create",
        shop_domain=SHOP,
        webhook_id="wh-1",
        event_id="ev-1",
        triggered_at=fired,
        api_version="2025-10",
    )


async def test_tampered_or_unsigned_delivery_is_rejected(fake, receiver):
    url, inbox = receiver
    await fake.send_webhook(url, "orders/create", SHOP, order_payload())
    await fake.send_webhook(url, "orders/create", SHOP, order_payload(), secret="another-secret")
    (body, headers), (forged_body, forged_headers) = inbox
    signature = headers["X-Shopify-Hmac-Sha256"]
    assert not verify_webhook(body + b" ", signature, API_SECRET)
    assert not verify_webhook(body, signature, "wrong-secret")
    assert not verify_webhook(body, None, API_SECRET)
    assert not verify_webhook(body, "", API_SECRET)
    assert not verify_webhook(body, signature, "")
    assert not verify_webhook(body, "not base64 \u00e9", API_SECRET)
    assert not verify_webhook(forged_body, forged_headers["X-Shopify-Hmac-Sha256"], API_SECRET)


def delivery_headers(**changes: str | None) -> dict[str, str]:
    headers = {
        "x-shopify-topic": "orders/updated",
        "X-SHOPIFY-SHOP-DOMAIN": "Demo.MyShopify.com",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "X-Shopify-Triggered-At": "2026-06-13T23:45:10+05:30",
        "X-Shopify-API-Version": "2026-04",
    }
    for name, value in changes.items():
        header = name.replace("_", "-")
        headers = {key: val for key, val in headers.items() if key.lower() != header.lower()}
        if value is not None:
            headers[header] = value
    return headers


def test_parse_delivery_reads_any_header_casing():
    delivery = parse_delivery(delivery_headers())
    assert delivery.topic == "orders/updated"
    assert delivery.shop_domain == SHOP
    assert delivery.triggered_at == datetime(2026, 6, 13, 18, 15, 10, tzinfo=UTC)
    assert delivery.api_version == "2026-04"
    assert parse_delivery(CIMultiDict(delivery_headers())) == delivery


def test_parse_delivery_optional_headers():
    headers = delivery_headers(
        X_Shopify_Event_Id=None, X_Shopify_Triggered_At=None, X_Shopify_API_Version=None
    )
    delivery = parse_delivery(headers)
    assert (delivery.event_id, delivery.triggered_at, delivery.api_version) == (None, None, "")


@pytest.mark.parametrize(
    "header", ["X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Webhook-Id"]
)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_parse_delivery_requires_header(header, value):
    headers = delivery_headers(**{header.replace("-", "_"): value})
    with pytest.raises(ValueError, match=f"^{header}: missing$"):
        parse_delivery(headers)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T00:00:00Z", "0001-01-01T00:00+05:00"])
def test_parse_delivery_rejects_bad_triggered_at(value):
    with pytest.raises(ValueError, match=r"^X-Shopify-Triggered-At: "):
        parse_delivery(delivery_headers(X_Shopify_Triggered_At=value))


# OAuth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shop", "valid"),
    [
        ("demo.myshopify.com", True),
        ("demo-2.myshopify.com", True),
        ("Demo.myshopify.com", False),
        ("-demo.myshopify.com", False),
        ("demo.myshopify.com.evil.example", False),
        ("evil.example/demo.myshopify.com", False),
        ("myshopify.com", False),
    ],
)
def test_valid_shop_domain(shop, valid):
    assert valid_shop_domain(shop) is valid


def test_authorize_url_on_real_shopify():
    url = authorize_url(
        "https://{shop}/admin/api/{version}/graphql.json",
        SHOP,
        API_KEY,
        "read_orders,write_orders",
        CALLBACK,
        "nonce-1",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://demo.myshopify.com/admin/oauth/authorize"
    )
    assert dict(parse_qsl(parts.query)) == {
        "client_id": API_KEY,
        "scope": "read_orders,write_orders",
        "redirect_uri": CALLBACK,
        "state": "nonce-1",
    }


async def grant_redirect(http: aiohttp.ClientSession, fake: FakeShopify) -> dict[str, str]:
    url = authorize_url(
        fake.admin_url_template, SHOP, API_KEY, "read_orders,write_orders", CALLBACK, "nonce-1"
    )
    assert url.startswith(f"{fake.base_url}/{SHOP}/admin/oauth/authorize?")
    async with http.get(url, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(f"{CALLBACK}?")
    return dict(parse_qsl(urlsplit(location).query))


async def test_install_round_trip(fake, http):
    query = await grant_redirect(http, fake)
    assert verify_query_hmac(query, API_SECRET)
    assert (query["shop"], query["state"]) == (SHOP, "nonce-1")
    grant = await exchange_code(
        http, fake.admin_url_template, SHOP, API_KEY, API_SECRET, query["code"]
    )
    assert grant.scope == "read_orders,write_orders"
    assert grant.access_token == fake.token(SHOP)
    info = await ShopifyAdmin(http, fake.admin_url_template, "2025-10").shop_info(
        SHOP, grant.access_token
    )
    assert info.name == "Demo Store"

    reused = await expect_error(
        exchange_code(http, fake.admin_url_template, SHOP, API_KEY, API_SECRET, query["code"])
    )
    assert (reused.retryable, reused.code) == (False, "HTTP_400")


async def test_tampered_callback_query_fails(fake, http):
    query = await grant_redirect(http, fake)
    assert not verify_query_hmac({**query, "shop": "evil.myshopify.com"}, API_SECRET)
    assert not verify_query_hmac({**query, "state": "other"}, API_SECRET)
    assert not verify_query_hmac({**query, "extra": "1"}, API_SECRET)
    assert not verify_query_hmac({k: v for k, v in query.items() if k != "hmac"}, API_SECRET)
    assert not verify_query_hmac(query, "wrong-secret")
    assert not verify_query_hmac(query, "")
    doubled = MultiDict(query)
    doubled.add("shop", "evil.myshopify.com")
    assert not verify_query_hmac(doubled, API_SECRET)


def test_query_hmac_matches_shopifys_documented_example():
    # The example of Shopify's OAuth verification docs (secret "hush").
    query = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "hmac": "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20",
        "shop": "some-shop.myshopify.com",
        "timestamp": "1337178173",
    }
    assert verify_query_hmac(query, "hush")
    assert not verify_query_hmac({**query, "timestamp": "1337178174"}, "hush")


async def test_exchange_code_with_wrong_secret_is_refused(fake, http):
    query = await grant_redirect(http, fake)
    error = await expect_error(
        exchange_code(http, fake.admin_url_template, SHOP, API_KEY, "wrong", query["code"])
    )
    assert not error.retryable


async def test_exchange_code_unreachable_is_retryable(http):
    template = f"http://127.0.0.1:{free_port()}/{{shop}}/admin/api/{{version}}/graphql.json"
    error = await expect_error(exchange_code(http, template, SHOP, API_KEY, API_SECRET, "c"))
    assert (error.retryable, error.code) == (True, "CONNECTION")


# Admin GraphQL ------------------------------------------------------------------------------


async def test_shop_info(admin):
    assert await admin.shop_info(SHOP, TOKEN) == ShopInfo(
        name="Demo Store",
        email="owner@demo.example",
        currency="INR",
        iana_timezone="Asia/Kolkata",
        phone="+912240001234",
        country_code="IN",
        primary_locale="hi",
    )


async def test_register_webhooks_is_idempotent(admin, fake):
    for _ in range(2):
        for topic in SUBSCRIBED_TOPICS:
            await admin.register_webhook(SHOP, TOKEN, topic, HOOK_URL)
    assert fake.webhook_subscriptions[SHOP] == [(topic, HOOK_URL) for topic in SUBSCRIBED_TOPICS]
    variables = [body["variables"] for _, body, _ in fake.requests[:1]]
    assert variables == [
        {"topic": "ORDERS_CREATE", "webhookSubscription": {"uri": HOOK_URL, "format": "JSON"}}
    ]


async def test_a_topic_the_tokens_scopes_do_not_cover_is_refused_as_access_denied(admin, fake):
    fake.add_shop(SHOP, TOKEN, scopes="read_orders,write_orders,read_customers,write_customers")
    error = await expect_error(admin.register_webhook(SHOP, TOKEN, "returns/approve", HOOK_URL))
    assert error.code == "ACCESS_DENIED" and not error.retryable
    assert "read_returns" in str(error)
    await admin.register_webhook(SHOP, TOKEN, "orders/create", HOOK_URL)
    fake.add_shop(SHOP, TOKEN, scopes="read_orders,write_returns")
    await admin.register_webhook(SHOP, TOKEN, "returns/approve", HOOK_URL)
    assert fake.webhook_subscriptions[SHOP] == [
        ("orders/create", HOOK_URL),
        ("returns/approve", HOOK_URL),
    ]


async def test_add_and_remove_tags(admin, fake):
    order = fake.add_order(SHOP, order_payload(tags="vip"))
    await admin.add_tags(SHOP, TOKEN, str(order["id"]), ["cod-confirmed", "ivr"])
    assert fake.tags(SHOP, order["id"]) == ["vip", "cod-confirmed", "ivr"]
    await admin.remove_tags(SHOP, TOKEN, f"gid://shopify/Order/{order['id']}", ["ivr", "vip"])
    assert fake.tags(SHOP, order["id"]) == ["cod-confirmed"]
    for path, body, headers in fake.requests:
        assert path == f"/{SHOP}/admin/api/2025-10/graphql.json"
        assert headers["X-Shopify-Access-Token"] == TOKEN
        assert "cod-confirmed" not in body["query"]  # values travel as variables only


async def test_tags_on_unknown_order_is_a_user_error(admin):
    error = await expect_error(admin.add_tags(SHOP, TOKEN, "1", ["x"]))
    assert (error.retryable, error.code) == (False, "USER_ERROR")
    assert "Order does not exist" in str(error)


async def test_cancel_then_cancel_again(admin, fake):
    order = fake.add_order(SHOP, order_payload())
    note = "Customer cancelled on the IVR call"
    await admin.cancel_order(
        SHOP,
        TOKEN,
        str(order["id"]),
        refund=False,
        restock=True,
        notify_customer=True,
        staff_note=note,
    )
    assert fake.order(SHOP, order["id"])["cancelled_at"]
    assert fake.cancellations == [
        {
            "shop": SHOP,
            "order_id": order["id"],
            "reason": "CUSTOMER",
            "refund": False,
            "restock": True,
            "notify_customer": True,
            "staff_note": note,
        }
    ]
    again = await expect_error(
        admin.cancel_order(
            SHOP, TOKEN, str(order["id"]), refund=False, restock=True, notify_customer=False
        )
    )
    assert (again.retryable, again.code) == (False, "ALREADY_CANCELLED")


async def test_cancel_unknown_order(admin):
    error = await expect_error(
        admin.cancel_order(SHOP, TOKEN, "42", refund=False, restock=False, notify_customer=False)
    )
    assert (error.retryable, error.code) == (False, "NOT_FOUND")


@pytest.mark.parametrize("http_status", [200, 429])
@pytest.mark.parametrize(
    ("available", "requested", "restore_rate", "wait"),
    [(10.0, 110.0, 50.0, 2.0), (50.0, 52.0, 100.0, 1.0)],
)
async def test_throttled_call(admin, fake, http_status, available, requested, restore_rate, wait):
    fake.throttle_next(
        1,
        currently_available=available,
        requested_cost=requested,
        restore_rate=restore_rate,
        http_status=http_status,
    )
    error = await expect_error(admin.shop_info(SHOP, TOKEN))
    assert (error.retryable, error.code, error.retry_after) == (True, "THROTTLED", wait)
    assert (await admin.shop_info(SHOP, TOKEN)).name == "Demo Store"


async def test_server_error_is_retryable(admin, fake):
    fake.fail_next(1, status=502)
    error = await expect_error(admin.shop_info(SHOP, TOKEN))
    assert (error.retryable, error.code) == (True, "HTTP_502")
    assert (await admin.shop_info(SHOP, TOKEN)).currency == "INR"


async def test_bad_token_is_not_retryable(admin):
    error = await expect_error(admin.shop_info(SHOP, "shpat_wrong"))
    assert (error.retryable, error.code) == (False, "UNAUTHORIZED")
    assert "Invalid API key or access token" in str(error)


async def test_unreachable_shopify_is_retryable(http):
    template = f"http://127.0.0.1:{free_port()}/{{shop}}/admin/api/{{version}}/graphql.json"
    error = await expect_error(ShopifyAdmin(http, template, "2025-10").shop_info(SHOP, TOKEN))
    assert (error.retryable, error.code) == (True, "CONNECTION")


async def test_unknown_field_is_a_graphql_error(admin):
    error = await expect_error(admin.graphql(SHOP, TOKEN, "query { noSuchField { id } }"))
    assert (error.retryable, error.code) == (False, "GRAPHQL")
    assert "noSuchField" in str(error)


async def test_orders_updated_since_pages_rest_shaped_orders(admin, fake):
    since = datetime(2026, 1, 15, 5, 0, tzinfo=UTC)
    fake.add_order(SHOP, order_payload(updated_at=(since - timedelta(days=1)).isoformat()))
    added = [
        fake.add_order(
            SHOP, order_payload(updated_at=(since + timedelta(minutes=5 - i)).isoformat())
        )
        for i in range(5)
    ]
    pages, cursor = [], None
    while True:
        page, cursor = await admin.orders_updated_since(SHOP, TOKEN, since, cursor, page_size=2)
        pages.append(page)
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 1]
    orders = [order for page in pages for order in page]
    assert [order["id"] for order in orders] == [order["id"] for order in reversed(added)]
    for got, original in zip(orders, reversed(added), strict=True):
        assert parse_order(got, default_region="IN") == parse_order(original, default_region="IN")


async def test_orders_page_is_capped_below_shopifys_query_cost_limit(admin, fake):
    since = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(MAX_ORDERS_PAGE + 2):
        fake.add_order(SHOP, order_payload())
    page, cursor = await admin.orders_updated_since(SHOP, TOKEN, since, page_size=50)
    assert len(page) == MAX_ORDERS_PAGE
    assert cursor is not None


async def test_get_order(admin, fake):
    original = fake.add_order(SHOP, order_payload(tags="a, b", phone="+919812345678"))
    order = await admin.get_order(SHOP, TOKEN, str(original["id"]))
    assert order is not None
    assert order["id"] == original["id"]
    assert (order["total_price"], order["tags"]) == ("1499.00", "a, b")
    assert order["order_number"] == original["order_number"]
    assert parse_order(order, default_region="IN") == parse_order(original, default_region="IN")
    assert await admin.get_order(SHOP, TOKEN, "12345") is None


async def test_customer_by_phone_and_sms_consent(admin, fake):
    order = fake.add_order(SHOP, order_payload())
    customer = await admin.find_customer_by_phone(SHOP, TOKEN, "+919876543210")
    assert customer is not None
    assert customer["id"] == order["customer"]["id"]
    assert customer["sms_marketing_consent"]["state"] == "not_subscribed"
    assert await admin.find_customer_by_phone(SHOP, TOKEN, "+14155552671") is None

    moment = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
    await admin.update_sms_consent(
        SHOP, TOKEN, str(customer["id"]), subscribed=False, updated_at=moment
    )
    consent = fake.customer(SHOP, customer["id"])["sms_marketing_consent"]
    assert consent["state"] == "unsubscribed"
    assert consent["opt_in_level"] == "single_opt_in"
    assert consent["consent_updated_at"] == "2026-02-01T09:30:00Z"


async def test_find_customer_needs_e164(admin):
    error = await expect_error(admin.find_customer_by_phone(SHOP, TOKEN, "98765 OR email:*"))
    assert (error.retryable, error.code) == (False, "INVALID_PHONE")


async def test_refund_prepaid_order(admin, fake):
    order = fake.add_order(
        SHOP, order_payload(financial_status="paid", payment_gateway_names=["razorpay"])
    )
    refund_id = await admin.refund_order(
        SHOP, TOKEN, str(order["id"]), amount="500.00", currency="INR", note="Late", notify=True
    )
    assert refund_id.startswith("gid://shopify/Refund/")
    stored = fake.order(SHOP, order["id"])
    [refund] = stored["refunds"]
    assert refund["note"] == "Late"
    assert [(t["amount"], t["gateway"], t["kind"]) for t in refund["transactions"]] == [
        ("500.00", "razorpay", "refund")
    ]
    assert stored["financial_status"] == "partially_refunded"

    too_much = await expect_error(
        admin.refund_order(
            SHOP, TOKEN, str(order["id"]), amount="1000.00", currency="INR", note="", notify=False
        )
    )
    assert (too_much.retryable, too_much.code) == (False, "USER_ERROR")


async def test_refund_unpaid_cod_order_is_refused(admin, fake):
    order = fake.add_order(SHOP, order_payload())
    error = await expect_error(
        admin.refund_order(
            SHOP, TOKEN, str(order["id"]), amount="100.00", currency="INR", note="", notify=False
        )
    )
    assert (error.retryable, error.code) == (False, "NOT_REFUNDABLE")


async def test_order_details_carry_archive_refunds_and_shipments(admin, fake):
    payload = order_payload(
        financial_status="paid",
        fulfillment_status="partial",
        payment_gateway_names=["razorpay"],
        closed_at="2026-01-20T10:00:00+05:30",
    )
    kurta, dupatta = payload["line_items"]
    payload["fulfillments"] = [
        {
            "id": 91,
            "status": "success",
            "shipment_status": "in_transit",
            "tracking_company": "Delhivery",
            "tracking_numbers": ["DL1", "DL2"],
            "tracking_urls": ["https://t.example/DL1", "https://t.example/DL2"],
            "estimated_delivery_at": "2026-01-18T12:00:00Z",
            "in_transit_at": "2026-01-16T08:00:00Z",
            "line_items": [{"id": kurta["id"], "quantity": 1}],
        }
    ]
    order = fake.add_order(SHOP, payload)
    await admin.refund_order(
        SHOP,
        TOKEN,
        str(order["id"]),
        amount="499.00",
        currency="INR",
        note="",
        notify=False,
        lines=[(str(dupatta["id"]), 1)],
    )
    details = await admin.order_details(SHOP, TOKEN, str(order["id"]))
    assert details is not None
    assert (details.closed, details.closed_at) == (True, datetime(2026, 1, 20, 4, 30, tzinfo=UTC))
    assert (details.financial_status, details.fulfillment_status) == (
        "partially_refunded",
        "partially_fulfilled",
    )
    assert (details.total, details.refunded, details.currency) == ("1499.00", "499.00", "INR")
    assert [(i.title, i.quantity, i.refundable, i.unit_price) for i in details.line_items] == [
        ("Cotton Kurta - M", 1, 1, "899.00"),
        ("Block Print Dupatta", 1, 0, "499.00"),
    ]
    (shipment,) = details.fulfillments
    assert (shipment.status, shipment.display_status) == ("SUCCESS", "IN_TRANSIT")
    assert shipment.estimated_delivery_at == datetime(2026, 1, 18, 12, tzinfo=UTC)
    assert shipment.delivered_at is None
    assert [t.url for t in shipment.tracking] == ["https://t.example/DL1", "https://t.example/DL2"]
    assert shipment.lines == ((f"gid://shopify/LineItem/{kurta['id']}", 1),)
    assert await admin.order_details(SHOP, TOKEN, "12345") is None


async def test_suggested_refund_prices_lines_and_names_the_payments(admin, fake):
    order = fake.add_order(
        SHOP, order_payload(financial_status="paid", payment_gateway_names=["razorpay"])
    )
    kurta = order["line_items"][0]
    suggestion = await admin.suggest_refund(SHOP, TOKEN, str(order["id"]), [(str(kurta["id"]), 1)])
    assert (suggestion.amount, suggestion.maximum, suggestion.currency) == (
        "899.00",
        "1499.00",
        "INR",
    )
    (payment,) = suggestion.payments
    assert (payment.gateway, payment.maximum) == ("razorpay", "1499.00")
    everything = await admin.suggest_refund(SHOP, TOKEN, str(order["id"]))
    assert everything.amount == "1499.00"
    query, variables = fake.requests[-1][1]["query"], fake.requests[-1][1]["variables"]
    assert "suggestedRefund(refundLineItems: $refundLineItems" in query
    assert variables["suggestFullRefund"] is True and "refundLineItems" not in variables

    # refundCreate sends the lines with the amount; more of a line than is left is refused.
    await admin.refund_order(
        SHOP,
        TOKEN,
        str(order["id"]),
        amount="899.00",
        currency="INR",
        note="",
        notify=False,
        lines=[(str(kurta["id"]), 1)],
    )
    sent = fake.requests[-1][1]["variables"]["input"]
    assert sent["refundLineItems"] == [
        {
            "lineItemId": f"gid://shopify/LineItem/{kurta['id']}",
            "quantity": 1,
            "restockType": "NO_RESTOCK",
        }
    ]
    again = await expect_error(
        admin.refund_order(
            SHOP,
            TOKEN,
            str(order["id"]),
            amount="1.00",
            currency="INR",
            note="",
            notify=False,
            lines=[(str(kurta["id"]), 1)],
        )
    )
    assert (again.retryable, again.code) == (False, "USER_ERROR")
    assert "more items than were purchased" in str(again)


# Order mapping ------------------------------------------------------------------------------


def test_parse_shopify_sample_order():
    order = parse_order(SAMPLE_ORDER, default_region="US")
    assert order.shopify_order_id == "820982911946154508"
    assert (order.name, order.number) == ("#9999", 1234)
    assert (order.total_amount, order.currency) == ("388.00", "USD")
    assert (order.gateways, order.payment_method) == (["visa", "bogus"], "prepaid")
    assert (order.financial_status, order.fulfillment_status) == ("voided", "")
    assert order.tags == ["tag1", "tag2"]
    assert (order.phone, order.phone_problem) == (None, NO_VALID_PHONE)
    assert order.customer == CustomerData(
        shopify_customer_id="115310627314723954",
        name="John Smith",
        email="john@example.com",
        phone=None,
        sms_consent=None,
    )
    assert order.placed_at == datetime(2022, 1, 1, tzinfo=UTC)
    assert order.cancelled_at == datetime(2022, 1, 1, tzinfo=UTC)
    assert order.updated_at is None
    assert order.city == "Shippington"
    assert order.items == [LineItem(title="IPod Nano - 8GB", quantity=1, price="199.00")]


def phones(
    shipping: tuple[str | None, str] = (None, "IN"),
    billing: tuple[str | None, str] = (None, "IN"),
    order: str | None = None,
    customer: str | None = None,
    default_address: tuple[str | None, str] = (None, "IN"),
) -> dict[str, Any]:
    payload = order_payload(phone=order)
    payload["shipping_address"].update(phone=shipping[0], country_code=shipping[1])
    payload["billing_address"].update(phone=billing[0], country_code=billing[1])
    payload["customer"]["phone"] = customer
    payload["customer"]["default_address"].update(
        phone=default_address[0], country_code=default_address[1]
    )
    return payload


@pytest.mark.parametrize(
    ("payload", "phone", "problem"),
    [
        (phones(shipping=("098765 43210", "IN")), "+919876543210", ""),
        (phones(billing=("+91 91234 56789", "IN")), "+919123456789", ""),
        (phones(order="99887 76655"), "+919988776655", ""),
        (phones(customer="+14155552671"), "+14155552671", ""),
        (phones(default_address=("(415) 555-2671", "US")), "+14155552671", ""),
        (phones(shipping=("020 7946 0958", "GB")), "+442079460958", ""),
        (phones(shipping=("98765 43210", "")), "+919876543210", ""),
        (
            phones(shipping=("555-555-SHIP", "US"), billing=("98765 43210", "IN")),
            "+919876543210",
            "",
        ),
        (phones(shipping=("12345", "IN"), order="not a phone"), None, NO_VALID_PHONE),
        (phones(), None, NO_PHONE),
    ],
    ids=[
        "shipping",
        "billing",
        "order",
        "customer",
        "default-address-own-region",
        "shipping-own-region",
        "shop-region-when-no-country",
        "invalid-skipped",
        "all-invalid",
        "none",
    ],
)
def test_phone_fallbacks(payload, phone, problem):
    order = parse_order(payload, default_region="IN")
    assert (order.phone, order.phone_problem) == (phone, problem)


def test_customer_phone_and_consent():
    payload = order_payload()
    payload["customer"]["sms_marketing_consent"]["state"] = "subscribed"
    customer = parse_order(payload, default_region="IN").customer
    assert customer is not None
    assert (customer.phone, customer.sms_consent, customer.name) == (
        "+919876543210",
        "subscribed",
        "Asha Rao",
    )


@pytest.mark.parametrize(
    ("gateways", "method"),
    [
        (["Cash on Delivery (COD)"], "cod"),
        (["  COD "], "cod"),
        (["bogus", "cash on delivery"], "cod"),
        (["razorpay"], "prepaid"),
        ([], "prepaid"),
    ],
)
def test_cod_or_prepaid_by_gateway(gateways, method):
    payload = order_payload(payment_gateway_names=gateways)
    assert parse_order(payload, default_region="IN").payment_method == method


def test_cod_gateway_names_are_configurable():
    payload = order_payload(payment_gateway_names=["Pay on Delivery"])
    order = parse_order(payload, default_region="IN", cod_gateways={" pay on delivery"})
    assert order.payment_method == "cod"


def without(key: str) -> dict[str, Any]:
    payload = copy.deepcopy(SAMPLE_ORDER)
    del payload[key]
    return payload


def changed(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SAMPLE_ORDER), **changes}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (without("id"), "id"),
        (changed(id=820982911946154508.0), "id"),
        (changed(id="82098x"), "id"),
        (changed(id=True), "id"),
        (without("name"), "name"),
        (without("order_number") | {"number": None}, "order_number"),
        (changed(total_price="3,88.00"), "total_price"),
        (changed(total_price=388.0), "total_price"),
        (changed(currency=5), "currency"),
        (without("created_at"), "created_at"),
        (changed(created_at="yesterday"), "created_at"),
        (changed(payment_gateway_names="cod"), "payment_gateway_names"),
        (changed(shipping_address=[]), "shipping_address"),
        (changed(customer="john"), "customer"),
        (changed(customer={"first_name": "John"}), "customer.id"),
        (changed(tags=5), "tags"),
        (changed(line_items={}), "line_items"),
        (changed(line_items=[{"quantity": "1", "price": "1.00"}]), "line_items[0].quantity"),
        (changed(line_items=[{"quantity": 1, "price": None}]), "line_items[0].price"),
    ],
)
def test_malformed_payload_names_the_field(payload, field):
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
        parse_order(payload, default_region="US")


def test_payload_must_be_an_object():
    with pytest.raises(ValueError, match=r"^order: "):
        parse_order([SAMPLE_ORDER], default_region="US")  # type: ignore[arg-type]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
NESTED_KEYS = st.sampled_from(
    ["id", "phone", "country_code", "city", "first_name", "title", "quantity", "price", "state"]
)
SECTION = st.dictionaries(NESTED_KEYS, JSON, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(SAMPLE_ORDER)),
        JSON | SECTION | st.lists(SECTION, max_size=2),
        max_size=6,
    )
)
def test_parse_order_raises_only_value_error(changes):
    with contextlib.suppress(ValueError):
        parse_order({**SAMPLE_ORDER, **changes}, default_region="IN")
