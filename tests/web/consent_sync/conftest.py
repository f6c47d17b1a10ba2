"""A shop with SMS by Twilio, WhatsApp by Gupshup and its Shopify (the fakes, the real app and
worker), whose customer is a Shopify customer subscribed to SMS marketing: the consent sync
tests drive it through the real routes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from providers.sandbox.shopify import FakeShopify
from settings import Settings
from storage.models import Shop
from storage.shops import write_secrets
from tests.conftest import SECURITY
from tests.web import test_messaging
from tests.web.test_messaging import (  # noqa: F401 (fixtures)
    CUSTOMER,
    SMS_FROM,
    fakes,
    port,
    res,
    server,
    worker,
    wrote_from,
)

shop_order = test_messaging.order

DOMAIN = "demo.myshopify.com"
TOKEN = "shpat_consent_sync_token"
SHOPIFY_CUSTOMER = 7_012_345_600_001


@pytest.fixture
async def order(shop_order, res, fakes):  # noqa: F811 (fixtures)
    """The customer's order; the shop has written to them from its Twilio platform number."""
    await wrote_from(res, shop_order, "twilio", SMS_FROM)
    return shop_order


@pytest.fixture
async def shopify(clock):
    fake = FakeShopify(clock=clock)
    await fake.start()
    fake.add_shop(DOMAIN, TOKEN, name="Demo", phone="+91 80 4000 1234")
    fake.add_customer(
        DOMAIN,
        {
            "id": SHOPIFY_CUSTOMER,
            "first_name": "Asha",
            "phone": CUSTOMER,
            "sms_marketing_consent": {
                "state": "subscribed",
                "opt_in_level": "single_opt_in",
                "consent_updated_at": "2026-01-01T00:00:00Z",
            },
        },
    )
    yield fake
    await fake.close()


@pytest.fixture
def settings(database_url, fakes, port, shopify):  # noqa: F811 (fixtures)
    twilio, gupshup, ringcentral = fakes["twilio"], fakes["gupshup"], fakes["ringcentral"]
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": shopify.api_key,
            "api_secret": shopify.api_secret,
            "admin_url": shopify.admin_url_template,
        },
        providers={
            "twilio": {
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_url": twilio.base_url,
                "sms_from": SMS_FROM,
                "messages_per_second": 1,
            },
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
            "exotel": {"api_url": fakes["exotel"].base_url},
            "ringcentral": {
                "client_id": ringcentral.client_id,
                "client_secret": ringcentral.client_secret,
                "jwt": ringcentral.jwt,
                "api_url": ringcentral.base_url,
                "sms_from": "+16505550100",
            },
        },
    )


@pytest.fixture
async def shop(res, order) -> Shop:  # noqa: F811 (fixtures)
    """The order's shop, installed, with its Shopify access token."""
    async with res.db.transaction() as session:
        shop = await session.scalar(select(Shop).where(Shop.id == order.shop_id))
        shop.status = "installed"
        shop.country = "IN"
        write_secrets(shop, res.box, shopify_access_token=TOKEN)
    return shop
