"""Shopify end to end against the fake Shopify over HTTP: install, webhooks, events, privacy,
reconciliation and throttling, with the real app, worker and job handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from sqlalchemy import delete, func, select

from flows.shops.shopify_events import ShopifyEvents
from providers.sandbox.shopify import FakeShopify, order_payload, webhook_hmac
from providers.shopify.webhooks import SUBSCRIBED_TOPICS
from settings import Settings
from storage.models import Activity, Customer, Job, Message, Order, Shop, WebhookReceipt
from storage.shops import read_secrets
from tests.conftest import SECURITY

DOMAIN = "demo.myshopify.com"
TOKEN = "shpat_test_token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def fake():
    shopify = FakeShopify(api_key="app-key", api_secret="app-secret")
    await shopify.start()
    shopify.add_shop(DOMAIN, TOKEN, name="Demo Store", phone="+91 80 4000 1234")
    yield shopify
    await shopify.close()


@pytest.fixture
async def browser():
    """The merchant's browser: keeps cookies, also for 127.0.0.1."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url, fake, port):
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": "app-key",
            "api_secret": "app-secret",
            "admin_url": fake.admin_url_template,
        },
    )


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue, port):
    return await aiohttp_server(app_factory(db, queue), port=port)


def url(server, path: str) -> str:
    return str(server.make_url(path))


async def connect(browser, server, worker) -> dict:
    """Install through OAuth as a merchant's browser would, then let the worker connect."""
    install = await browser.get(
        url(server, f"/shopify/install?shop={DOMAIN}"), allow_redirects=False
    )
    assert install.status == 302
    grant = await browser.get(install.headers["Location"], allow_redirects=False)
    assert grant.status == 302
    callback = await browser.get(grant.headers["Location"], allow_redirects=False)
    assert callback.status == 200, await callback.text()
    await worker.run_until_idle()
    return await callback.json()


async def count(db, model, *where) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_oauth_install_connects_the_shop(browser, server, worker, db, fake, resources):
    issued = await connect(browser, server, worker)
    assert issued["shop"] == DOMAIN and issued["api_key"].startswith("otk_")
    assert sorted(t for t, _ in fake.webhook_subscriptions[DOMAIN]) == sorted(SUBSCRIBED_TOPICS)
    assert {u for _, u in fake.webhook_subscriptions[DOMAIN]} == {
        f"{resources.settings.server.public_url}/webhooks/shopify"
    }
    async with db.sessions() as session:
        shop = await session.scalar(select(Shop))
    assert (shop.name, shop.currency, shop.timezone, shop.country) == (
        "Demo Store",
        "INR",
        "Asia/Kolkata",
        "IN",
    )
    assert read_secrets(shop, resources.box)["shopify_access_token"] == fake.token(DOMAIN)
    assert TOKEN not in shop.credentials
    assert shop.status == "partially_installed"  # settings still to be completed


async def test_the_page_showing_a_new_api_key_is_never_cached(browser, server):
    install = await browser.get(
        url(server, f"/shopify/install?shop={DOMAIN}"), allow_redirects=False
    )
    grant = await browser.get(install.headers["Location"], allow_redirects=False)
    callback = await browser.get(grant.headers["Location"], allow_redirects=False)
    assert callback.status == 200 and "api_key" in await callback.json()
    assert callback.headers["Cache-Control"] == "no-store"


async def test_oauth_callback_refuses_bad_hmac_and_bad_state(browser, server, db):
    install = await browser.get(
        url(server, f"/shopify/install?shop={DOMAIN}"), allow_redirects=False
    )
    grant = await browser.get(install.headers["Location"], allow_redirects=False)
    callback = grant.headers["Location"]
    params = dict(parse_qsl(urlsplit(callback).query))

    tampered = {**params, "shop": "other.myshopify.com"}
    response = await browser.get(url(server, "/shopify/callback"), params=tampered)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "bad_signature"

    browser.cookie_jar.clear()
    response = await browser.get(callback, allow_redirects=False)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "bad_state"
    assert await count(db, Shop) == 0

    bad_shop = await browser.get(url(server, "/shopify/install?shop=evil.example.com"))
    assert bad_shop.status == 400


async def test_order_webhook_delivered_three_times_concurrently_is_stored_once(
    browser, server, worker, db, fake
):
    await connect(browser, server, worker)
    payload = order_payload()
    endpoint = url(server, "/webhooks/shopify")
    statuses = await asyncio.gather(
        *(
            fake.send_webhook(
                endpoint,
                "orders/create",
                DOMAIN,
                payload,
                webhook_id="delivery-1",
                event_id="event-1",
            )
            for _ in range(3)
        )
    )
    assert statuses == [200, 200, 200]
    # A retry of the same event with a new delivery id is a duplicate too.
    assert (
        await fake.send_webhook(
            endpoint, "orders/create", DOMAIN, payload, webhook_id="delivery-2", event_id="event-1"
        )
        == 200
    )
    assert await count(db, WebhookReceipt) == 1
    assert await count(db, Job, Job.kind == "shopify.webhook") == 1
    await worker.run_until_idle()
    async with db.sessions() as session:
        order = await session.scalar(select(Order))
        customer = await session.scalar(select(Customer))
    assert (order.name, order.total_amount, order.currency) == (
        payload["name"],
        "1499.00",
        "INR",
    )
    assert order.payment_method == "cod" and order.phone == "+919876543210"
    assert order.customer_id == customer.id and customer.phone == "+919876543210"


async def test_bad_signature_is_refused_and_nothing_stored(browser, server, worker, db, fake):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    wrong = await fake.send_webhook(
        endpoint, "orders/create", DOMAIN, order_payload(), secret="not-the-app-secret"
    )
    assert wrong == 401
    missing = await browser.post(
        endpoint, data=b"{}", headers={"X-Shopify-Topic": "orders/create"}
    )
    assert missing.status == 401
    assert await count(db, WebhookReceipt) == 0


async def test_unknown_shop_is_answered_200_and_ignored(browser, server, db, fake):
    status = await fake.send_webhook(
        url(server, "/webhooks/shopify"),
        "orders/create",
        "stranger.myshopify.com",
        order_payload(),
    )
    assert status == 200
    assert await count(db, WebhookReceipt) == 0


async def test_webhook_answer_is_json_naming_the_outcome(browser, server, db):
    body = b'{"id": 1}'
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": "stranger.myshopify.com",
        "X-Shopify-Webhook-Id": "delivery-unknown",
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, "app-secret"),
    }
    response = await browser.post(url(server, "/webhooks/shopify"), data=body, headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await response.json() == {"status": "unknown_shop"}


async def test_stale_retry_does_not_undo_newer_state(browser, server, worker, db, fake):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    old = order_payload(financial_status="pending", updated_at="2026-01-15T10:30:05+05:30")
    new = {**old, "financial_status": "paid", "updated_at": "2026-01-15T11:00:00+05:30"}
    assert await fake.send_webhook(endpoint, "orders/updated", DOMAIN, new) == 200
    await worker.run_until_idle()
    assert await fake.send_webhook(endpoint, "orders/create", DOMAIN, old) == 200
    await worker.run_until_idle()
    async with db.sessions() as session:
        order = await session.scalar(select(Order))
    assert order.financial_status == "paid"


async def test_order_without_a_usable_phone_is_recorded_and_skipped(
    browser, server, worker, db, fake
):
    await connect(browser, server, worker)
    payload = order_payload(
        phone=None,
        customer=None,
        billing_address=None,
        shipping_address={"city": "Pune", "country_code": "IN", "phone": "12"},
    )
    await fake.send_webhook(url(server, "/webhooks/shopify"), "orders/create", DOMAIN, payload)
    await worker.run_until_idle()
    async with db.sessions() as session:
        order = await session.scalar(select(Order))
    assert order.phone == "" and "no valid phone" in order.skip_reason
    assert await count(db, Job, Job.status == "dead") == 0


async def test_customer_redact_removes_their_data(browser, server, worker, db, fake, clock):
    await connect(browser, server, worker)
    payload = order_payload()
    await fake.send_webhook(url(server, "/webhooks/shopify"), "orders/create", DOMAIN, payload)
    await worker.run_until_idle()
    async with db.transaction() as session:
        order = await session.scalar(select(Order))
        session.add(
            Message(
                shop_id=order.shop_id,
                order_id=order.id,
                channel="sms",
                direction="out",
                provider="test",
                to_phone=order.phone,
                body="Your order #1001 of Rs 1499",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    redact = {
        "shop_id": 1,
        "shop_domain": DOMAIN,
        "customer": {"id": payload["customer"]["id"], "email": "x", "phone": "x"},
        "orders_to_redact": [payload["id"]],
    }
    assert (
        await fake.send_webhook(
            url(server, "/webhooks/shopify"), "customers/redact", DOMAIN, redact
        )
        == 200
    )
    await worker.run_until_idle()
    async with db.sessions() as session:
        customer = await session.scalar(select(Customer))
        order = await session.scalar(select(Order))
        message = await session.scalar(select(Message))
    assert customer.phone.startswith("redacted") and customer.name == customer.email == ""
    assert order.phone == ""
    assert (message.body, message.to_phone) == ("", "redacted")
    assert "+91" not in str(customer.phone)


async def test_shop_redact_deletes_the_shop(browser, server, worker, db, fake):
    await connect(browser, server, worker)
    await fake.send_webhook(
        url(server, "/webhooks/shopify"),
        "shop/redact",
        DOMAIN,
        {"shop_id": 1, "shop_domain": DOMAIN},
    )
    await worker.run_until_idle()
    assert await count(db, Shop) == 0


async def test_a_batch_the_database_refuses_is_answered_503_and_the_retry_succeeds(
    browser, server, worker, db, fake
):
    """The intake remembers shops for a few seconds; one deleted meanwhile makes the batch
    fail (its receipts would point at no shop): nothing is stored, Shopify is told to retry,
    and the retry finds the shop gone."""
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    first = order_payload(id=1)
    assert await fake.send_webhook(endpoint, "orders/create", DOMAIN, first) == 200
    async with db.transaction() as session:
        await session.execute(delete(Shop))
    late = order_payload(id=2)
    assert (
        await fake.send_webhook(endpoint, "orders/create", DOMAIN, late, webhook_id="late-1")
        == 503
    )
    assert await count(db, WebhookReceipt) == 0 and await count(db, Job) == 0
    retry = await browser.post(
        endpoint,
        data=json.dumps(late).encode(),
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Webhook-Id": "late-1",
            "X-Shopify-Hmac-Sha256": webhook_hmac(json.dumps(late).encode(), "app-secret"),
        },
    )
    assert retry.status == 200 and await retry.json() == {"status": "unknown_shop"}


async def test_uninstall_stops_all_work_at_once(browser, server, worker, db, fake, clock):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, "app/uninstalled", DOMAIN, {"domain": DOMAIN}) == 200
    await worker.run_until_idle()
    await fake.send_webhook(endpoint, "orders/create", DOMAIN, order_payload())
    await worker.run_until_idle()
    async with db.sessions() as session:
        shop = await session.scalar(select(Shop))
    assert shop.status == "uninstalled" and shop.credentials == ""
    assert await count(db, Order) == 0
    assert await count(db, Job, Job.status == "queued", Job.shop_id == shop.id) == 0


async def test_reconciliation_recovers_orders_no_webhook_brought(
    browser, server, worker, db, fake, clock
):
    await connect(browser, server, worker)  # the first run backfills and schedules the next
    when = clock.now() + timedelta(minutes=5)
    for _ in range(3):
        fake.add_order(
            DOMAIN, order_payload(updated_at=when.isoformat(), created_at=when.isoformat())
        )
    clock.advance(timedelta(minutes=16))
    await worker.run_until_idle()
    assert await count(db, Order) == 3
    async with db.sessions() as session:
        alert = await session.scalar(select(Activity).where(Activity.kind == "merchant_alert"))
    assert alert is not None and alert.detail["missed_orders"] == 3


async def test_throttled_call_is_retried_after_the_advertised_wait(
    browser, server, worker, db, fake, clock
):
    fake.throttle_next(1, currently_available=10, requested_cost=110, restore_rate=50)
    await connect(browser, server, worker)
    async with db.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "shopify.connect"))
    assert job.status == "queued" and "THROTTLED" in job.last_error
    assert job.due_at == clock.now() + timedelta(seconds=2)  # (110 - 10) / 50
    assert fake.webhook_subscriptions.get(DOMAIN, []) == []
    clock.advance(timedelta(seconds=2))
    await worker.run_until_idle()
    assert len(fake.webhook_subscriptions[DOMAIN]) == len(SUBSCRIBED_TOPICS)


async def test_a_flood_of_orders_is_written_a_batch_at_a_time(browser, server, worker, db, fake):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")

    def with_phone(n: int) -> dict:
        payload = order_payload()
        payload["shipping_address"] = {**payload["shipping_address"], "phone": f"+9198765{n:05d}"}
        return payload

    payloads = [with_phone(0), with_phone(0)] + [with_phone(n) for n in range(1, 18)]
    payloads.append({**order_payload(), "total_price": "lots"})  # unusable: recorded, skipped
    for payload in payloads:
        assert await fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
    # The shop has no settings yet (partially installed): no verification jobs.
    assert await worker.run_until_idle() == 20
    assert await count(db, Order) == 19
    assert await count(db, Job, Job.status == "done", Job.kind == "shopify.webhook") == 20
    async with db.sessions() as session:
        rejected = await session.scalar(
            select(func.count()).select_from(Activity).where(Activity.kind == "order_rejected")
        )
        customers = await session.scalar(select(func.count()).select_from(Customer))
        unlinked = await session.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id.is_(None))
        )
        received = await session.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.kind == "order_received", Activity.order_id.is_not(None))
        )
    assert rejected == 1 and unlinked == 0 and received == 19
    assert customers == 19 - 1  # two orders of one phone share the customer


async def test_a_repeat_buyer_in_two_batches_running_at_once_is_one_customer(
    browser, server, worker, resources, db, queue, clock, fake, caplog
):
    """Two batches (two workers, or one worker's concurrent batches) each bring a new order
    of the same new customer: both are written as a batch, no retry one by one."""
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    for n in range(1, 7):
        payload = order_payload(id=n, order_number=1000 + n)
        assert await fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
    claimed = await queue.claim("test-worker", 100)
    webhooks = [job for job in claimed if job.kind == "shopify.webhook"]
    assert len(webhooks) == 6
    events = ShopifyEvents(db, clock, queue, resources.verifier())
    with caplog.at_level(logging.WARNING, logger="flows.shops.shopify_events"):
        outcomes = await asyncio.gather(
            events.handle_batch(webhooks[:3]), events.handle_batch(webhooks[3:])
        )
    assert outcomes == [[None] * 3, [None] * 3]
    assert "one by one" not in caplog.text
    assert await count(db, Order) == 6 and await count(db, Customer) == 1
    async with db.sessions() as session:
        linked = await session.scalars(select(Order.customer_id).distinct())
        assert len(linked.all()) == 1


async def test_a_signed_but_malformed_body_is_answered_400_or_recorded_dead(
    browser, server, worker, db, fake
):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    not_object = await fake.send_webhook(endpoint, "orders/create", DOMAIN, [1, 2])
    assert not_object == 400
    body = b'{"id": 1, "broken'
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": DOMAIN,
        "X-Shopify-Webhook-Id": "w-broken",
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, "app-secret"),
    }
    accepted = await browser.post(endpoint, data=body, headers=headers)
    assert accepted.status == 200
    await worker.run_until_idle()
    async with db.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "shopify.webhook"))
    assert job.status == "dead" and "not JSON" in job.last_error
    assert await count(db, Order) == 0


async def test_long_checkout_fields_are_cut_to_their_columns_and_the_order_kept(
    browser, server, worker, db, fake
):
    """PostgreSQL refuses a value longer than its String(n) column (SQLite stores it), and a
    NUL character anywhere: such an order's job would fail until dead."""
    await connect(browser, server, worker)
    city = "Ĉ" * 300  # not ASCII: the limit counts characters, not bytes
    first, last, email = "A" * 200, "R" * 200, "x" * 300 + "@example.com"
    payload = order_payload(name="#" + "9" * 100, financial_status="partially_" * 10)
    payload["shipping_address"]["city"] = city
    payload["tags"] = "vip\x00, gift"
    payload["line_items"][0]["title"] = "Kurta\x00"
    payload["customer"] |= {
        "first_name": first,
        "last_name": last + "\x00",
        "email": email,
        "sms_marketing_consent": {"state": "subscribed" * 5},
    }
    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
    await worker.run_until_idle()
    assert await count(db, Job, Job.kind == "shopify.webhook", Job.status != "done") == 0
    async with db.sessions() as session:
        order = await session.scalar(select(Order))
        customer = await session.scalar(select(Customer))
    assert order.city == city[:128]
    assert (order.name, order.financial_status) == (payload["name"][:64], "partially_" * 3 + "pa")
    assert order.tags == ["vip", "gift"] and order.items[0]["title"] == "Kurta"
    assert customer.name == f"{first} {last}"[:255]
    assert customer.email == email[:255]
    assert customer.sms_consent == "subscribedsubscr"

    update = {
        "id": payload["customer"]["id"],
        "first_name": "B" * 300,
        "email": "y" * 300,
        "sms_marketing_consent": {"state": "not_subscribed" * 3},
    }
    assert await fake.send_webhook(endpoint, "customers/update", DOMAIN, update) == 200
    await worker.run_until_idle()
    assert await count(db, Job, Job.kind == "shopify.webhook", Job.status != "done") == 0
    async with db.sessions() as session:
        customer = await session.scalar(select(Customer))
    assert (customer.name, customer.email) == ("B" * 255, "y" * 255)
    assert customer.sms_consent == "not_subscribedno"


async def test_an_amount_longer_than_its_column_is_recorded_as_rejected(
    browser, server, worker, db, fake
):
    await connect(browser, server, worker)
    payload = order_payload(total_price="1" * 40 + ".00")
    assert (
        await fake.send_webhook(url(server, "/webhooks/shopify"), "orders/create", DOMAIN, payload)
        == 200
    )
    await worker.run_until_idle()
    assert await count(db, Job, Job.kind == "shopify.webhook", Job.status != "done") == 0
    assert await count(db, Order) == 0
    async with db.sessions() as session:
        rejected = await session.scalar(select(Activity).where(Activity.kind == "order_rejected"))
    assert rejected.detail == {"error": "total_price: longer than 32 characters"}
