"""The shop's own time zone, read from Shopify at connect: the calling window keeps it unless
the merchant names another, and report days and `from`/`to` dates are the shop's days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from providers.sandbox.shopify import FakeShopify, order_payload
from storage.models import Order
from tests.web.test_shopify import DOMAIN, TOKEN, url
from tests.web.test_verification_journeys import (  # noqa: F401 (fixtures)
    APP_KEY,
    APP_SECRET,
    Journey,
    browser,
    exotel,
    gupshup,
    journey,
    port,
    server,
    settings,
    urls,
)

NEW_YORK = "America/New_York"


@pytest.fixture
async def fake():
    shopify = FakeShopify(api_key=APP_KEY, api_secret=APP_SECRET)
    await shopify.start()
    shopify.add_shop(DOMAIN, TOKEN, name="Demo Store", iana_timezone=NEW_YORK)
    yield shopify
    await shopify.close()


@pytest.fixture
def shop(database_url: str, request: pytest.FixtureRequest) -> Journey:
    """The journeys' `journey`, on each database, with this module's New York shop."""
    return request.getfixturevalue("journey")


async def test_the_calling_window_is_the_shops_own_time_zone_by_default(shop: Journey):
    """09:00 UTC is 14:30 in Kolkata but 04:00 in New York: the shop's first call waits for
    09:00 New York time (14:00 UTC)."""
    await shop.install()
    assert (await shop.api("GET", "settings"))["ivr"]["timezone"] == ""
    await shop.order()
    assert shop.exotel.calls == []
    await shop.advance(4 * 60 + 59)
    assert shop.exotel.calls == []
    await shop.advance(1)
    assert len(shop.exotel.calls) == 1


async def test_a_time_zone_the_merchant_names_wins(shop: Journey):
    await shop.install({"ivr": {"timezone": "Asia/Kolkata"}})
    assert (await shop.api("GET", "settings"))["ivr"]["timezone"] == "Asia/Kolkata"
    await shop.order()
    assert len(shop.exotel.calls) == 1


async def test_report_days_and_dates_are_the_shops(shop: Journey):
    await shop.install()
    endpoint = url(shop.server, "/webhooks/shopify")
    # 23:30 in New York on 4 January, and 00:30 on 5 January (04:30 and 05:30 UTC).
    late, early = (
        datetime(2026, 1, 5, 4, 30, tzinfo=UTC),
        datetime(2026, 1, 5, 5, 30, tzinfo=UTC),
    )
    for number, placed in ((1001, late), (1002, early)):
        payload = order_payload(
            id=number, order_number=number, name=f"#{number}", created_at=placed.isoformat()
        )
        assert await shop.fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
    await shop.worker.run_until_idle()
    async with shop.res.db.transaction() as session:
        await session.execute(update(Order).values(verification_status="pending"))

    async def names(**params: str) -> list[str]:
        async with shop.browser.get(
            url(shop.server, "/api/v1/orders"), params=params, headers=shop.headers
        ) as response:
            assert response.status == 200, await response.text()
            return [row["name"] for row in (await response.json())["orders"]]

    assert await names(**{"from": "2026-01-05", "to": "2026-01-05"}) == ["#1002"]
    assert await names(**{"from": "2026-01-04", "to": "2026-01-04"}) == ["#1001"]
    assert await names(**{"from": "2026-01-05T00:00", "to": "2026-01-05T00:45"}) == ["#1002"]
    # An explicit offset is taken as written.
    assert await names(**{"from": "2026-01-05T05:00+00:00", "to": "2026-01-05T06:00Z"}) == [
        "#1002"
    ]
    assert await names(**{"to": "2026-01-04T23:59:59"}) == ["#1001"]
