"""`/status`: the shop's install status, what is missing and what keeps notification SMS from
customers, from the same setup list as the admin API's `GET /api/v1/shop/setup`; what to paste
where (the providers' callback URLs and the carrier's shipment URL) only for the owner."""

from __future__ import annotations

import re

import pytest

from bot.handlers import status
from flows.shops import config as shop_config
from tests.bot.conftest import bot_settings, new_shop

OWNER, AGENT = 5001, 5002
EXOTEL = {"account_sid": "platform-sid", "api_key": "platform-key", "api_token": "platform-token"}


@pytest.fixture
def settings(database_url, telegram, port):
    return bot_settings(database_url, telegram, port, providers={"exotel": EXOTEL})


async def test_status_shows_the_setup_list_and_only_the_owner_the_urls(res, webhook, telegram):
    shop = await new_shop(res, "demo")
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/status")
    text = telegram.chat(OWNER).texts[-1]
    setup = await res.account_desk().setup(shop.shop_id)
    assert text.startswith("demo: Partially installed")
    assert setup["missing"] and all(p["message"] in text for p in setup["missing"])
    assert "voice: no account" in text

    await res.account_desk().connect(shop.shop_id, {"provider": "exotel", "platform": True})
    await telegram.type(OWNER, "/invite")
    code = re.search(r"/start (\w+)", telegram.chat(OWNER).texts[-1]).group(1)
    await telegram.type(AGENT, f"/start {code}")

    setup = await res.account_desk().setup(shop.shop_id)
    urls = {item["value"] for a in setup["accounts"] for item in a["paste"]}
    assert len(urls) == 2  # Exotel's Passthru and inbound-SMS URLs
    urls.add(setup["paste"][0]["value"])
    assert "/webhooks/shipments/" in setup["paste"][0]["value"]
    await telegram.type(OWNER, "/status")
    owner_view = telegram.chat(OWNER).texts[-1]
    assert "voice: platform exotel account" in owner_view
    assert status.PASTE in owner_view and all(url in owner_view for url in urls)
    await telegram.type(AGENT, "/status")
    agent_view = telegram.chat(AGENT).texts[-1]
    assert "voice: platform exotel account" in agent_view
    assert status.PASTE_IS_THE_OWNERS in agent_view
    assert not any(url in agent_view for url in urls)


async def test_status_says_what_keeps_notification_sms_from_customers(res, webhook, telegram):
    shop = await new_shop(res, "demo")
    await telegram.type(OWNER, f"/start {shop.code}")
    await res.account_desk().connect(shop.shop_id, {"provider": "exotel", "platform": True})
    await telegram.type(OWNER, "/status")
    assert status.WARNINGS not in telegram.chat(OWNER).texts[-1]  # SMS notifications are off

    document = {"notifications": {"sms_active": True}}
    await shop_config.save(res.db, res.box, res.clock, shop.shop_id, document)
    await telegram.type(OWNER, "/status")
    text = telegram.chat(OWNER).texts[-1]
    warnings = (await res.account_desk().setup(shop.shop_id))["warnings"]
    assert status.WARNINGS in text and warnings
    assert all(f"{w['message']} ({w['field']})" in text for w in warnings)
    assert "notifications.sms_sender_id" in text
