"""A shop connected with a custom app's token: Shopify signs its webhooks with that app's own
API secret key, taken with the token (CLI flag, API field), stored sealed, and tried before
the platform's. Without it the shop gets its orders only from reconciliation, and says so."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from providers.sandbox.shopify import FakeShopify, order_payload
from providers.shopify.webhooks import SUBSCRIBED_TOPICS
from settings import Settings
from storage.models import Activity, Job, Order, Shop, WebhookReceipt
from tests.conftest import SECRET_KEY, SECURITY
from tests.test_config import run_main
from tests.web.test_shopify import free_port, url

ADMIN = "platform-admin-token-0123456789abcdef"
CUSTOM = "custom.myshopify.com"
CUSTOM_TOKEN = "shpat_custom_app_token"
CUSTOM_SECRET = "shpss_custom_app_secret_0123456789"
PLAIN = "plain.myshopify.com"
PLAIN_TOKEN = "shpat_plain_custom_app_token"
PLAIN_SECRET = "shpss_plain_app_secret_0123456789ab"
PLATFORM_SECRET = "platform-app-secret"


@pytest.fixture
async def fake():
    shopify = FakeShopify(api_key="platform-app-key", api_secret=PLATFORM_SECRET)
    await shopify.start()
    shopify.add_shop(CUSTOM, CUSTOM_TOKEN, app_secret=CUSTOM_SECRET)
    shopify.add_shop(PLAIN, PLAIN_TOKEN, app_secret=PLAIN_SECRET)
    yield shopify
    await shopify.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url, fake, port):
    return Settings(
        database={"url": database_url},
        security={**SECURITY, "admin_token": ADMIN},
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": "platform-app-key",
            "api_secret": PLATFORM_SECRET,
            "admin_url": fake.admin_url_template,
        },
    )


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue, port):
    return await aiohttp_server(app_factory(db, queue), port=port)


async def create(client, body: dict) -> tuple[int, dict]:
    async with client.post(
        "/api/v1/shops", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as response:
        return response.status, await response.json()


async def shop_status(client, api_key: str) -> dict:
    async with client.get(
        "/api/v1/shop/status", headers={"Authorization": f"Bearer {api_key}"}
    ) as response:
        assert response.status == 200
        return await response.json()


async def count(db, model, *where) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_a_custom_apps_webhooks_are_verified_with_its_own_secret(
    aiohttp_client, server, worker, db, fake
):
    client = await aiohttp_client(server)
    status, created = await create(
        client, {"domain": CUSTOM, "access_token": CUSTOM_TOKEN, "api_secret": CUSTOM_SECRET}
    )
    assert status == 201, created
    assert created["shop"]["webhooks"] == "custom_app"
    await worker.run_until_idle()
    async with db.sessions() as session:
        shop = await session.scalar(select(Shop))
    assert CUSTOM_SECRET not in shop.app_secret and CUSTOM_SECRET not in shop.credentials
    assert (await shop_status(client, created["api_key"]))["webhooks"]["signed_by"] == (
        "custom_app"
    )

    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, "orders/create", CUSTOM, order_payload()) == 200
    # The platform's secret still verifies (the shop may also have installed the app).
    second = order_payload(id=2, order_number=1002)
    assert (
        await fake.send_webhook(endpoint, "orders/create", CUSTOM, second, secret=PLATFORM_SECRET)
        == 200
    )
    await worker.run_until_idle()
    assert await count(db, Order) == 2
    # The secret is this shop's alone: it verifies nothing naming another shop.
    forged = order_payload(id=3, order_number=1003)
    assert (
        await fake.send_webhook(endpoint, "orders/create", PLAIN, forged, secret=CUSTOM_SECRET)
        == 401
    )
    assert await count(db, WebhookReceipt) == 2


async def test_a_secret_without_a_token_or_an_empty_one_is_refused_naming_it(
    aiohttp_client, server, db
):
    client = await aiohttp_client(server)
    for body in (
        {"domain": CUSTOM, "api_secret": CUSTOM_SECRET},
        {"domain": CUSTOM, "access_token": CUSTOM_TOKEN, "api_secret": " "},
    ):
        status, answer = await create(client, body)
        assert status == 422, answer
        assert [f["field"] for f in answer["error"]["fields"]] == ["api_secret"]
    assert await count(db, Shop) == 0


async def test_without_its_secret_a_custom_app_shop_is_told_it_gets_orders_by_reconciliation(
    aiohttp_client, server, worker, db, fake
):
    client = await aiohttp_client(server)
    status, created = await create(client, {"domain": PLAIN, "access_token": PLAIN_TOKEN})
    assert status == 201 and created["shop"]["webhooks"] == "reconciliation_only"
    await worker.run_until_idle()
    webhooks = (await shop_status(client, created["api_key"]))["webhooks"]
    assert webhooks["signed_by"] is None and "reconciliation" in webhooks["message"]
    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, "orders/create", PLAIN, order_payload()) == 401


async def test_a_token_without_read_returns_connects_with_every_other_topic(
    aiohttp_client, server, worker, db, fake
):
    """A custom app made before ordertalk asked for read_returns: Shopify refuses the returns
    topic, the shop connects with the others and its returns come by the shipment webhook."""
    old_scopes = "read_orders,write_orders,read_customers,write_customers"
    fake.add_shop(CUSTOM, CUSTOM_TOKEN, app_secret=CUSTOM_SECRET, scopes=old_scopes)
    client = await aiohttp_client(server)
    status, created = await create(
        client, {"domain": CUSTOM, "access_token": CUSTOM_TOKEN, "api_secret": CUSTOM_SECRET}
    )
    assert status == 201, created
    await worker.run_until_idle()
    others = [topic for topic in SUBSCRIBED_TOPICS if topic != "returns/approve"]
    assert [topic for topic, _ in fake.webhook_subscriptions[CUSTOM]] == others
    async with db.sessions() as session:
        (connected,) = await session.scalars(
            select(Activity.detail).where(Activity.kind == "shop_connected")
        )
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "shopify.connect", Job.status != "done")
            )
            == 0
        )
    assert connected["webhooks"] == others


def cli_env(database_url: str) -> dict[str, str]:
    return {"ORDERTALK_DATABASE__URL": database_url, "ORDERTALK_SECURITY__SECRET_KEY": SECRET_KEY}


async def test_shop_add_takes_the_custom_apps_secret(database_url, server, worker, db, fake):
    """`shop add` in another process while the server runs: the server's first webhook of
    the new shop is verified with the secret the command stored."""
    env = cli_env(database_url)
    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, "orders/create", CUSTOM, order_payload()) == 401

    def add(*extra: str):
        return run_main(
            "shop", "add", "--domain", CUSTOM, "--token", CUSTOM_TOKEN, *extra, env=env
        )

    added = await asyncio.to_thread(add, "--api-secret", CUSTOM_SECRET)
    assert added.returncode == 0, added.stderr
    assert "webhooks are verified with the custom app's API secret key" in added.stdout
    assert await fake.send_webhook(endpoint, "orders/create", CUSTOM, order_payload()) == 200
    await worker.run_until_idle()
    assert await count(db, Order) == 1

    plain = await asyncio.to_thread(
        run_main, "shop", "add", "--domain", PLAIN, "--token", PLAIN_TOKEN, env=env
    )
    assert plain.returncode == 0, plain.stderr
    assert "--api-secret" in plain.stdout and "15-minute reconciliation" in plain.stdout
    status = await asyncio.to_thread(run_main, "shop", "status", "--domain", PLAIN, env=env)
    assert "webhooks are refused" in status.stdout and "reconciliation" in status.stdout

    lonely = await asyncio.to_thread(
        run_main, "shop", "add", "--domain", PLAIN, "--api-secret", PLAIN_SECRET, env=env
    )
    assert lonely.returncode == 2 and lonely.stderr.startswith("--api-secret: ")
